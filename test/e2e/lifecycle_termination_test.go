package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/image/busybox"
)

// The image's STOPSIGNAL is what a deleted pod's container gets; a postStart
// sleep holds the container back from Running.
func TestLifecycleStopSignalAndSleepHook(t *testing.T) {
	s := StartNode(t)
	// An image like busybox that asks to be stopped with SIGUSR1, loaded
	// while the node runs.
	base, err := busybox.Image("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.StopSignal = "SIGUSR1"
	img, err := mutate.Config(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "usr1.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.WriteArchive(f, image.ArchiveImage{Image: img, Names: []string{"docker.io/library/usr1:1.0"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(s.Bin, "image", "load", "--data-dir", s.DataDir, archive).CombinedOutput(); err != nil {
		t.Fatalf("image load: %v %s", err, out)
	}
	out := t.TempDir()
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: usr1}
spec:
  containers:
  - name: c
    image: usr1:1.0
    command: ["sh", "-c", "trap 'echo got USR1 > /out/signal; exit 0' USR1; trap 'echo got TERM > /out/signal; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts: [{name: out, mountPath: /out}]
    lifecycle:
      postStart:
        sleep: {seconds: 2}
  volumes:
  - {name: out, hostPath: {path: `+out+`, type: Directory}}
`, "create", "-f", "-")
	waitReady(t, s, "usr1")
	started := s.MustKubectl("get", "pod", "usr1", "-o", `jsonpath={.status.containerStatuses[0].state.running.startedAt}|{.status.conditions[?(@.type=="Ready")].lastTransitionTime}`)
	st, ready, _ := strings.Cut(started, "|")
	t0, err1 := time.Parse(time.RFC3339, st)
	t1, err2 := time.Parse(time.RFC3339, ready)
	if err1 != nil || err2 != nil || t1.Sub(t0) < time.Second {
		t.Errorf("Ready at %s, started at %s: the postStart sleep did not hold it back", ready, st)
	}
	s.MustKubectl("delete", "pod", "usr1")
	Eventually(t, 10*time.Second, func() error {
		b, _ := os.ReadFile(filepath.Join(out, "signal"))
		if string(b) != "got USR1\n" {
			return fmt.Errorf("signal file %q", b)
		}
		return nil
	})
}

// Validation: probes and lifecycle on plain init containers, duplicate names.
func TestLifecycleValidation(t *testing.T) {
	s := StartServer(t)
	r := s.KubectlRun(`apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  initContainers:
  - name: init
    image: busybox:1.36
    livenessProbe: {exec: {command: ["true"]}}
    lifecycle: {postStart: {exec: {command: ["true"]}}}
  containers:
  - {name: init, image: "busybox:1.36"}
`, "create", "-f", "-")
	for _, want := range []string{
		`The Pod "bad" is invalid`,
		`spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always`,
		`spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always`,
		`spec.initContainers[0].name: Duplicate value: "init"`,
	} {
		if r.Err == nil || !strings.Contains(r.Stderr, want) {
			t.Errorf("create lacks %q: %v\n%s", want, r.Err, r.Stderr)
		}
	}
}
