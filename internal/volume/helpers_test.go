package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// fakeSource is an in-memory Source: configMaps and secrets by
// namespace/name, tokens numbered tok-1, tok-2, ... that expire after the
// requested lifetime (3600 s when none) on the test's clock.
type fakeSource struct {
	mu         sync.Mutex
	clock      *clocktesting.FakeClock
	configMaps map[string]*v1.ConfigMap
	secrets    map[string]*v1.Secret
	tokens     int
	requests   []*authenticationv1.TokenRequest
	tokenErr   error
}

func newFakeSource(c *clocktesting.FakeClock) *fakeSource {
	return &fakeSource{clock: c, configMaps: map[string]*v1.ConfigMap{}, secrets: map[string]*v1.Secret{}}
}

func (f *fakeSource) setConfigMap(ns, name string, data map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configMaps[ns+"/"+name] = &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func (f *fakeSource) deleteConfigMap(ns, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.configMaps, ns+"/"+name)
}

func (f *fakeSource) setSecret(ns, name string, data map[string][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[ns+"/"+name] = &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func (f *fakeSource) setTokenErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenErr = err
}

func (f *fakeSource) GetConfigMap(_ context.Context, ns, name string) (*v1.ConfigMap, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cm, ok := f.configMaps[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, name)
	}
	return cm.DeepCopy(), nil
}

func (f *fakeSource) GetSecret(_ context.Context, ns, name string) (*v1.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.secrets[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
	}
	return s.DeepCopy(), nil
}

func (f *fakeSource) CreateToken(_ context.Context, ns, sa string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokenErr != nil {
		return nil, f.tokenErr
	}
	if sa == "missing" {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccounts"}, sa)
	}
	f.requests = append(f.requests, req.DeepCopy())
	f.tokens++
	out := req.DeepCopy()
	if out.Spec.ExpirationSeconds == nil {
		out.Spec.ExpirationSeconds = ptr.To[int64](3600)
	}
	out.Status.Token = fmt.Sprintf("tok-%d", f.tokens)
	out.Status.ExpirationTimestamp = metav1.NewTime(f.clock.Now().Add(time.Duration(*out.Spec.ExpirationSeconds) * time.Second))
	return out, nil
}

func (f *fakeSource) tokenRequests() []*authenticationv1.TokenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*authenticationv1.TokenRequest(nil), f.requests...)
}

var testEpoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	m     *Manager
	src   *fakeSource
	clock *clocktesting.FakeClock
	dir   string
}

// newEnv returns a Manager over a fresh PodsDir with a fake Source and clock
// and 4 CPUs / 1Gi allocatable. Without root, memory-backed volumes are
// plain directories (tests that need tmpfs use testutil.RequireRoot). When
// the test ends every pod is torn down and no mount may be left.
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	c := clocktesting.NewFakeClock(testEpoch)
	src := newFakeSource(c)
	m, err := New(Config{
		PodsDir: filepath.Join(dir, "pods"),
		Source:  src,
		Clock:   c,
		Allocatable: v1.ResourceList{
			v1.ResourceCPU:    resource.MustParse("4"),
			v1.ResourceMemory: resource.MustParse("1Gi"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m.tmpfs = os.Geteuid() == 0
	t.Cleanup(func() {
		uids, err := m.PodUIDs()
		if err != nil {
			t.Error(err)
		}
		for _, uid := range uids {
			if err := m.Teardown(context.Background(), uid); err != nil {
				t.Errorf("teardown %s: %v", uid, err)
			}
		}
		if left := mountsUnder(t, dir); len(left) > 0 {
			t.Errorf("mounts left behind: %v", left)
			_ = unmountAll(dir)
		}
	})
	return &env{m: m, src: src, clock: c, dir: dir}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		t.Fatal(err)
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mi := range infos {
		out = append(out, mi.Mountpoint)
	}
	return out
}

func newPod(uid string, vols ...v1.Volume) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns1", UID: types.UID(uid)},
		Spec: v1.PodSpec{
			Volumes:            vols,
			ServiceAccountName: "default",
			Containers:         []v1.Container{{Name: "app", Image: "busybox"}},
		},
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func mustSetup(t *testing.T, m *Manager, pod *v1.Pod) {
	t.Helper()
	if err := m.Setup(context.Background(), pod); err != nil {
		t.Fatalf("Setup: %v", err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
