package e2e

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/peapod-dev/peapod/internal/image/busybox"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// waitWaitingReason waits until pod's first container waits with reason.
func waitWaitingReason(t *testing.T, s *Server, pod, reason string) string {
	t.Helper()
	var msg string
	Eventually(t, 30*time.Second, func() error {
		out := s.MustKubectl("get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}")
		r, m, _ := strings.Cut(out, "|")
		if r != reason {
			return fmt.Errorf("pod %s waits with %q (%s), want %s", pod, r, m, reason)
		}
		msg = m
		return nil
	})
	return msg
}

// imagePullPolicy and pull failures as upstream reports them; pulls from a
// registry on loopback through registries.yaml.
func TestNodeImages(t *testing.T) {
	s := StartNode(t)
	// A registry on loopback that has one image; every pull goes to it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	img, err := busybox.Image("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(l.Addr().String()+"/library/pulled:1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	testutil.WriteRegistries(t, filepath.Join(s.DataDir, "registries.yaml"), "http://"+l.Addr().String())
	s.Start()
	s.WaitNodeReady(60 * time.Second)

	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  containers:
  - {name: c, image: "busybox:absent", imagePullPolicy: Never, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - {name: c, image: "docker.io/library/missing:1.0", command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: invalid}
spec:
  containers:
  - {name: c, image: "Busybox:UPPER", command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: pulled}
spec:
  containers:
  - {name: c, image: "docker.io/library/pulled:1.0", command: [sleep, "3600"]}
`, "create", "-f", "-")
	if msg := waitWaitingReason(t, s, "never", "ErrImageNeverPull"); msg != `Container image "busybox:absent" is not present with pull policy of Never` {
		t.Errorf("ErrImageNeverPull message %q", msg)
	}
	if msg := waitWaitingReason(t, s, "invalid", "InvalidImageName"); !strings.Contains(msg, "invalid reference format") {
		t.Errorf("InvalidImageName message %q", msg)
	}
	// ErrImagePull, then ImagePullBackOff while backing off (the first is
	// brief: the events keep it).
	waitWaitingReason(t, s, "missing", "ImagePullBackOff")
	ev := s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=missing")
	for _, want := range []string{`Failed to pull image "docker.io/library/missing:1.0"`, l.Addr().String(), "Error: ErrImagePull", "Error: ImagePullBackOff", `Back-off pulling image "docker.io/library/missing:1.0"`} {
		if !strings.Contains(ev, want) {
			t.Errorf("events of missing lack %q:\n%s", want, ev)
		}
	}
	out := s.MustKubectl("get", "pods")
	for _, want := range []string{"ErrImageNeverPull", "InvalidImageName", "ImagePullBackOff"} {
		if !strings.Contains(out, want) {
			t.Errorf("get pods lacks STATUS %s:\n%s", want, out)
		}
	}
	waitReady(t, s, "pulled")
	ev = s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=pulled")
	for _, want := range []string{`Pulling image "docker.io/library/pulled:1.0"`, `Successfully pulled image "docker.io/library/pulled:1.0"`} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %q:\n%s", want, ev)
		}
	}
	if id := s.MustKubectl("get", "pod", "pulled", "-o", "jsonpath={.status.containerStatuses[0].imageID}"); !strings.Contains(id, "@sha256:") {
		t.Errorf("imageID %q", id)
	}
	if out := s.MustKubectl("exec", "pulled", "--", "echo", "ok"); out != "ok\n" {
		t.Errorf("exec in the pulled image: %q", out)
	}
}
