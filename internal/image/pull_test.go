package image_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/peapod-dev/peapod/internal/image"
)

// testRegistry is go-containerregistry's in-process registry on 127.0.0.1,
// optionally behind basic authentication, recording the paths it was asked for.
type testRegistry struct {
	t      *testing.T
	host   string // 127.0.0.1:port
	mu     sync.Mutex
	paths  []string
	handle http.Handler
}

func newRegistry(t *testing.T, user, pass string) *testRegistry {
	t.Helper()
	r := &testRegistry{t: t, handle: registry.New(registry.Logger(log.New(t.Output(), "registry: ", 0)))}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.paths = append(r.paths, req.URL.Path)
		r.mu.Unlock()
		if user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="peapod-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		r.handle.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.host = u.Host
	return r
}

// push writes img to this registry as repo:tag, bypassing authentication.
func (r *testRegistry) push(repoTag string, img v1.Image) v1.Hash {
	r.t.Helper()
	srv := httptest.NewServer(r.handle)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref, err := name.ParseReference(u.Host + "/" + repoTag)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(loopbackTransport(r.t))); err != nil {
		r.t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func (r *testRegistry) pushIndex(repoTag string, idx v1.ImageIndex) v1.Hash {
	r.t.Helper()
	srv := httptest.NewServer(r.handle)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref, err := name.ParseReference(u.Host + "/" + repoTag)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithTransport(loopbackTransport(r.t))); err != nil {
		r.t.Fatal(err)
	}
	d, _ := idx.Digest()
	return d
}

func (r *testRegistry) requested(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.paths {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

func withRegistries(t *testing.T, yaml string) func(*image.Options) {
	t.Helper()
	c, err := image.ParseRegistries([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return func(o *image.Options) { o.Registries = c }
}

func dockerConfig(t *testing.T, host, user, pass string) *image.Keyring {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	k, err := image.ParseDockerConfigJSON([]byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPullAnonymous(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "", "")
	one, _ := twoImages(t)
	digest := reg.push("library/app:1", one)
	s := openStore(t, "")
	ref := reg.host + "/library/app:1"
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != ref || img.Digest != digest.String() || img.RepoDigest != reg.host+"/library/app@"+digest.String() {
		t.Errorf("pulled %+v, want name %s digest %s", img, ref, digest)
	}
	dirs, cfg, err := s.Rootfs(ctx, ref)
	if err != nil || len(dirs) != 2 || !slices.Equal(cfg.Cmd, []string{"one"}) {
		t.Fatalf("Rootfs = %v, %+v, %v", dirs, cfg, err)
	}
	// By digest.
	byDigest := reg.host + "/library/app@" + digest.String()
	if img, err := s.Pull(ctx, byDigest, nil); err != nil || img.Name != byDigest {
		t.Fatalf("pull by digest = %+v, %v", img, err)
	}
	// Missing tag and missing repository.
	for _, missing := range []string{reg.host + "/library/app:2", reg.host + "/nothing/here:1"} {
		if _, err := s.Pull(ctx, missing, nil); !errors.Is(err, image.ErrNotFound) {
			t.Errorf("Pull(%s) = %v, want ErrNotFound", missing, err)
		}
	}
}

func TestPullMultiPlatform(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "", "")
	native := image.MakeImage(t, v1.Config{Cmd: []string{"native"}}, image.MakeLayer(t, "gzip", image.TarEntry{Name: "n", Body: "n"}))
	other := image.MakePlatformImage(t, "s390x", v1.Config{Cmd: []string{"other"}}, image.MakeLayer(t, "gzip", image.TarEntry{Name: "o", Body: "o"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	idxDigest := reg.pushIndex("multi:1", idx)
	s := openStore(t, "")
	img, err := s.Pull(ctx, reg.host+"/multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	nativeDigest, _ := native.Digest()
	if img.Digest != nativeDigest.String() || img.RepoDigest != reg.host+"/multi@"+idxDigest.String() {
		t.Errorf("pulled %+v: want manifest %s, repo digest of the index %s", img, nativeDigest, idxDigest)
	}
	// Another platform than any in the index.
	s390 := openStore(t, "", func(o *image.Options) { o.Platform = "linux/riscv64" })
	if _, err := s390.Pull(ctx, reg.host+"/multi:1", nil); !errors.Is(err, image.ErrNoMatchingPlatform) {
		t.Errorf("pull for linux/riscv64 = %v, want ErrNoMatchingPlatform", err)
	}
}

func TestPullWithCredentials(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "puller", "s3cret")
	one, _ := twoImages(t)
	reg.push("private/app:1", one)
	ref := reg.host + "/private/app:1"

	s := openStore(t, "")
	if _, err := s.Pull(ctx, ref, nil); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("anonymous pull = %v, want ErrUnauthorized", err)
	}
	if _, err := s.Pull(ctx, ref, dockerConfig(t, reg.host, "puller", "wrong")); !errors.Is(err, image.ErrUnauthorized) {
		t.Fatalf("pull with a wrong password = %v, want ErrUnauthorized", err)
	}
	// Secrets are tried in turn, as the kubelet does: a wrong one, then the right one.
	keys := dockerConfig(t, reg.host, "puller", "wrong")
	keys.Add(dockerConfig(t, "http://"+reg.host+"/v2/", "puller", "s3cret"))
	if _, err := s.Pull(ctx, ref, keys); err != nil {
		t.Fatalf("pull with pull secrets: %v", err)
	}
	if list, _ := s.List(ctx); len(list) != 1 {
		t.Fatalf("List = %v", list)
	}
	// Credentials from the registries configuration.
	s2 := openStore(t, "", withRegistries(t, fmt.Sprintf("configs:\n  %q:\n    auth:\n      username: puller\n      password: s3cret\n", reg.host)))
	if _, err := s2.Pull(ctx, ref, nil); err != nil {
		t.Fatalf("pull with registries.yaml auth: %v", err)
	}
}

// TestPullThroughMirror sends pulls of docker.io and ghcr.io images to registries
// on loopback, as an air-gapped registries.yaml does; the test transport fails
// the test if anything else is dialed.
func TestPullThroughMirror(t *testing.T) {
	ctx := context.Background()
	mirror := newRegistry(t, "", "")
	authMirror := newRegistry(t, "m", "pw")
	one, two := twoImages(t)
	mirror.push("mirrored/busybox:1.36", one)
	authMirror.push("prefix/team/tool:2", two)
	cfg := fmt.Sprintf(`
mirrors:
  docker.io:
    endpoint: ["http://%s"]
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "*":
    endpoint: ["http://%s/v2/prefix"]
configs:
  %q:
    auth:
      auth: %s
disable-default-registry-endpoint: true
`, mirror.host, authMirror.host, authMirror.host, base64.StdEncoding.EncodeToString([]byte("m:pw")))
	s := openStore(t, "", withRegistries(t, cfg))

	img, err := s.Pull(ctx, "busybox:1.36", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "docker.io/library/busybox:1.36" {
		t.Errorf("stored as %s, want docker.io/library/busybox:1.36", img.Name)
	}
	if !mirror.requested("/v2/mirrored/busybox/manifests/1.36") {
		t.Errorf("the mirror was not asked for the rewritten repository: %v", mirror.paths)
	}
	if _, _, err := s.Rootfs(ctx, "busybox:1.36"); err != nil {
		t.Fatal(err)
	}
	img, err = s.Pull(ctx, "ghcr.io/team/tool:2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "ghcr.io/team/tool:2" || !authMirror.requested("/v2/prefix/team/tool/manifests/2") {
		t.Errorf("pulled %s; mirror requests %v", img.Name, authMirror.paths)
	}
	// A miss at every mirror with the default endpoint disabled fails without
	// contacting docker.io (the transport would fail the test).
	if _, err := s.Pull(ctx, "busybox:9", nil); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Pull(busybox:9) = %v, want ErrNotFound", err)
	}
}

// TestPullFallsBackToDefaultEndpoint: a mirror that lacks the image is skipped
// and the registry itself answers.
func TestPullFallsBackToDefaultEndpoint(t *testing.T) {
	ctx := context.Background()
	origin := newRegistry(t, "", "")
	emptyMirror := newRegistry(t, "", "")
	one, _ := twoImages(t)
	origin.push("app:1", one)
	s := openStore(t, "", withRegistries(t, fmt.Sprintf("mirrors:\n  %q:\n    endpoint: [\"http://%s\"]\n", origin.host, emptyMirror.host)))
	if _, err := s.Pull(ctx, origin.host+"/app:1", nil); err != nil {
		t.Fatal(err)
	}
	if !emptyMirror.requested("/v2/app/manifests/1") || !origin.requested("/v2/app/manifests/1") {
		t.Errorf("want the mirror tried first, then the origin: mirror %v, origin %v", emptyMirror.paths, origin.paths)
	}
}

// TestPullUsesOptionsTransport: every connection of a pull goes through
// Options.Transport (here one that refuses everything), so the loopback-only
// transport the other tests use really confines them; without a mirror,
// "busybox" goes to Docker Hub's default endpoint.
func TestPullUsesOptionsTransport(t *testing.T) {
	var mu sync.Mutex
	var dialed []string
	tr := loopbackTransport(t)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return nil, errors.New("refused by the test")
	}
	s := openStore(t, "", func(o *image.Options) { o.Transport = tr })
	if _, err := s.Pull(context.Background(), "busybox", nil); err == nil {
		t.Fatal("pull succeeded without any registry")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) == 0 {
		t.Fatal("the pull did not use Options.Transport")
	}
	for _, a := range dialed {
		if a != "index.docker.io:443" {
			t.Errorf("dialed %s, want only index.docker.io:443 (refused)", a)
		}
	}
}
