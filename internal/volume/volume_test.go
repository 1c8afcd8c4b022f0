package volume

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{PodsDir: "rel", Source: newFakeSource(nil)}); err == nil {
		t.Error("relative PodsDir accepted")
	}
	if _, err := New(Config{PodsDir: t.TempDir()}); err == nil {
		t.Error("nil Source accepted")
	}
}

func TestEmptyDir(t *testing.T) {
	e := newEnv(t)
	pod := newPod("u1", v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	mustSetup(t, e.m, pod)
	dir := e.m.volumeDir(pod.UID, pluginEmptyDir, "scratch")
	if got := mode(t, dir); got != os.ModeDir|0o777 {
		t.Errorf("mode %v, want drwxrwxrwx", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("kept"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSetup(t, e.m, pod) // idempotent: content stays
	if got := readFile(t, filepath.Join(dir, "f")); got != "kept" {
		t.Errorf("content %q after a second Setup", got)
	}
	if err := e.m.Setup(context.Background(), newPod("u2", v1.Volume{Name: "h", VolumeSource: v1.VolumeSource{
		EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumHugePages}}})); err == nil ||
		!strings.Contains(err.Error(), `emptyDir medium "HugePages" is not supported`) {
		t.Errorf("hugepages: %v", err)
	}
}

func TestHostPathTypes(t *testing.T) {
	e := newEnv(t)
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })

	for _, tc := range []struct {
		name, path string
		typ        v1.HostPathType
		err        string
		check      func(t *testing.T)
	}{
		{name: "unset-missing", path: filepath.Join(base, "none"), typ: v1.HostPathUnset},
		{name: "dir-or-create", path: filepath.Join(base, "new/dir"), typ: v1.HostPathDirectoryOrCreate, check: func(t *testing.T) {
			if got := mode(t, filepath.Join(base, "new/dir")).Perm(); got != 0o755 {
				t.Errorf("created dir mode %v", got)
			}
		}},
		{name: "dir-or-create-on-file", path: file, typ: v1.HostPathDirectoryOrCreate, err: "hostPath type check failed: " + file + " is not a directory"},
		{name: "dir", path: base, typ: v1.HostPathDirectory},
		{name: "dir-missing", path: filepath.Join(base, "none"), typ: v1.HostPathDirectory, err: "is not a directory"},
		{name: "file-or-create", path: filepath.Join(base, "newfile"), typ: v1.HostPathFileOrCreate, check: func(t *testing.T) {
			if got := mode(t, filepath.Join(base, "newfile")); got != 0o644 {
				t.Errorf("created file mode %v", got)
			}
		}},
		{name: "file", path: file, typ: v1.HostPathFile},
		{name: "file-on-dir", path: base, typ: v1.HostPathFile, err: "hostPath type check failed: " + base + " is not a file"},
		{name: "socket", path: sock, typ: v1.HostPathSocket},
		{name: "socket-on-file", path: file, typ: v1.HostPathSocket, err: "is not a socket file"},
		{name: "char", path: "/dev/null", typ: v1.HostPathCharDev},
		{name: "char-on-file", path: file, typ: v1.HostPathCharDev, err: "is not a character device"},
		{name: "block-on-char", path: "/dev/null", typ: v1.HostPathBlockDev, err: "hostPath type check failed: /dev/null is not a block device"},
		{name: "backsteps", path: base + "/../x", typ: v1.HostPathUnset, err: "invalid HostPath `" + base + "/../x`: must not contain '..'"},
		{name: "bad-type", path: base, typ: "Nope", err: "Nope is an invalid volume type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := newPod("hp-"+tc.name, v1.Volume{Name: "h", VolumeSource: v1.VolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: tc.path, Type: ptr.To(tc.typ)}}})
			err := e.m.Setup(context.Background(), pod)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Setup: %v", err)
				}
				if tc.check != nil {
					tc.check(t)
				}
				ms, err := e.m.Mounts(pod, &v1.Container{Name: "c", VolumeMounts: []v1.VolumeMount{{Name: "h", MountPath: "/h"}}}, nil)
				if err != nil || len(ms) != 1 || ms[0].Source != tc.path || ms[0].ReadOnly {
					t.Errorf("Mounts = %+v, %v", ms, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if want := `MountVolume.SetUp failed for volume "h" : `; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q lacks the event prefix", err)
			}
		})
	}
}

func TestConfigMap(t *testing.T) {
	e := newEnv(t)
	e.src.setConfigMap("ns1", "cfg", map[string]string{"a.conf": "A", "b.conf": "B"})
	e.src.configMaps["ns1/cfg"].BinaryData = map[string][]byte{"bin": {0, 1, 2}}

	t.Run("all-keys", func(t *testing.T) {
		pod := newPod("cm1", v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
			LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}})
		mustSetup(t, e.m, pod)
		dir := e.m.volumeDir(pod.UID, pluginConfigMap, "cfg")
		if got := readFile(t, filepath.Join(dir, "a.conf")); got != "A" {
			t.Errorf("a.conf = %q", got)
		}
		if got := readFile(t, filepath.Join(dir, "bin")); got != "\x00\x01\x02" {
			t.Errorf("bin = %q", got)
		}
		if got := mode(t, filepath.Join(dir, "b.conf")); got != 0o644 {
			t.Errorf("default mode %v", got)
		}
		if target, err := os.Readlink(filepath.Join(dir, "a.conf")); err != nil || target != "..data/a.conf" {
			t.Errorf("a.conf -> %q, %v", target, err)
		}
		if target, err := os.Readlink(filepath.Join(dir, "..data")); err != nil || !strings.HasPrefix(target, "..20") {
			t.Errorf("..data -> %q, %v", target, err)
		}
		// configMap volumes live on disk, not on a tmpfs.
		if ok, _ := isTmpfs(dir); ok {
			t.Error("configMap volume is a tmpfs")
		}
	})

	t.Run("items", func(t *testing.T) {
		pod := newPod("cm2", v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
			LocalObjectReference: v1.LocalObjectReference{Name: "cfg"},
			DefaultMode:          ptr.To[int32](0o600),
			Items: []v1.KeyToPath{
				{Key: "a.conf", Path: "sub/dir/a"},
				{Key: "b.conf", Path: "b", Mode: ptr.To[int32](0o400)},
			}}}})
		mustSetup(t, e.m, pod)
		dir := e.m.volumeDir(pod.UID, pluginConfigMap, "cfg")
		if got := readFile(t, filepath.Join(dir, "sub/dir/a")); got != "A" {
			t.Errorf("sub/dir/a = %q", got)
		}
		if got := mode(t, filepath.Join(dir, "sub/dir/a")); got != 0o600 {
			t.Errorf("defaultMode not applied: %v", got)
		}
		if got := mode(t, filepath.Join(dir, "b")); got != 0o400 {
			t.Errorf("item mode not applied: %v", got)
		}
		if exists(filepath.Join(dir, "a.conf")) {
			t.Error("a key not listed in items was projected")
		}
	})

	t.Run("missing-key", func(t *testing.T) {
		pod := newPod("cm3", v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
			LocalObjectReference: v1.LocalObjectReference{Name: "cfg"},
			Items:                []v1.KeyToPath{{Key: "foo", Path: "foo"}}}}})
		err := e.m.Setup(context.Background(), pod)
		want := `MountVolume.SetUp failed for volume "cfg" : configmap references non-existent config key: foo`
		if err == nil || err.Error() != want {
			t.Fatalf("error %v, want %q", err, want)
		}
		if exists(e.m.volumeDir(pod.UID, pluginConfigMap, "cfg")) {
			t.Error("a failed volume left its directory")
		}
		pod.Spec.Volumes[0].ConfigMap.Optional = ptr.To(true)
		mustSetup(t, e.m, pod)
		if exists(filepath.Join(e.m.volumeDir(pod.UID, pluginConfigMap, "cfg"), "foo")) {
			t.Error("optional missing key was projected")
		}
	})

	t.Run("missing-configmap", func(t *testing.T) {
		pod := newPod("cm4", v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
			LocalObjectReference: v1.LocalObjectReference{Name: "x"}}}},
			v1.Volume{Name: "ok", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
				LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}})
		err := e.m.Setup(context.Background(), pod)
		want := `MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`
		if err == nil || err.Error() != want {
			t.Fatalf("error %v, want %q", err, want)
		}
		if !apierrors.IsNotFound(err) {
			t.Error("error does not wrap the API NotFound")
		}
		var ve *VolumeError
		if !errors.As(err, &ve) || ve.Volume != "cfg" {
			t.Errorf("no VolumeError for cfg: %#v", err)
		}
		if exists(e.m.volumeDir(pod.UID, pluginConfigMap, "cfg")) {
			t.Error("the failed volume left its directory")
		}
		if !exists(filepath.Join(e.m.volumeDir(pod.UID, pluginConfigMap, "ok"), "a.conf")) {
			t.Error("the other volume was not set up")
		}
		pod.Spec.Volumes[0].ConfigMap.Optional = ptr.To(true)
		mustSetup(t, e.m, pod)
		entries, err := os.ReadDir(e.m.volumeDir(pod.UID, pluginConfigMap, "cfg"))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if !strings.HasPrefix(en.Name(), "..") {
				t.Errorf("optional absent configMap projected %s", en.Name())
			}
		}
	})
}

func TestSecret(t *testing.T) {
	e := newEnv(t)
	e.src.setSecret("ns1", "creds", map[string][]byte{"user": []byte("admin"), "pass": []byte("s3cret")})
	pod := newPod("s1", v1.Volume{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{
		SecretName: "creds", Items: []v1.KeyToPath{{Key: "pass", Path: "p", Mode: ptr.To[int32](0o400)}}}}})
	mustSetup(t, e.m, pod)
	dir := e.m.volumeDir(pod.UID, pluginSecret, "creds")
	if got := readFile(t, filepath.Join(dir, "p")); got != "s3cret" {
		t.Errorf("p = %q", got)
	}
	if got := mode(t, filepath.Join(dir, "p")); got != 0o400 {
		t.Errorf("mode %v", got)
	}
	if exists(filepath.Join(dir, "user")) {
		t.Error("unlisted key projected")
	}

	pod = newPod("s2", v1.Volume{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{
		SecretName: "creds", Items: []v1.KeyToPath{{Key: "token", Path: "t"}}}}})
	err := e.m.Setup(context.Background(), pod)
	if want := `MountVolume.SetUp failed for volume "creds" : references non-existent secret key: token`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	if exists(e.m.volumeDir(pod.UID, pluginSecret, "creds")) {
		t.Error("failed secret volume left behind")
	}

	pod = newPod("s3", v1.Volume{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "nope"}}})
	err = e.m.Setup(context.Background(), pod)
	if want := `MountVolume.SetUp failed for volume "creds" : secret "nope" not found`; err == nil || err.Error() != want || !apierrors.IsNotFound(err) {
		t.Errorf("error %v, want %q wrapping NotFound", err, want)
	}
	pod.Spec.Volumes[0].Secret.Optional = ptr.To(true)
	mustSetup(t, e.m, pod)
}

func TestDownwardAPI(t *testing.T) {
	e := newEnv(t)
	pod := newPod("d1", v1.Volume{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{
		Items: []v1.DownwardAPIVolumeFile{
			{Path: "name", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
			{Path: "uid", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.uid"}},
			{Path: "labels", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.annotations"}, Mode: ptr.To[int32](0o600)},
			{Path: "tier", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}},
			{Path: "mem_limit", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}},
			{Path: "cpu_limit", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.cpu"}},
			{Path: "cpu_request", ResourceFieldRef: &v1.ResourceFieldSelector{ContainerName: "app", Resource: "requests.cpu", Divisor: resource.MustParse("1m")}},
		}}}})
	pod.Labels = map[string]string{"tier": "front", "app": "web"}
	pod.Annotations = map[string]string{"b": "2", "a": "x\"y"}
	pod.Spec.Containers[0].Resources = v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m")},
		Limits:   v1.ResourceList{v1.ResourceMemory: resource.MustParse("64Mi")},
	}
	mustSetup(t, e.m, pod)
	dir := e.m.volumeDir(pod.UID, pluginDownwardAPI, "info")
	for path, want := range map[string]string{
		"name":        "web",
		"namespace":   "ns1",
		"uid":         "d1",
		"labels":      "app=\"web\"\ntier=\"front\"",
		"annotations": "a=\"x\\\"y\"\nb=\"2\"",
		"tier":        "front",
		"mem_limit":   "64",
		"cpu_limit":   "4", // no limit: the node's allocatable
		"cpu_request": "250",
	} {
		if got := readFile(t, filepath.Join(dir, path)); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if got := mode(t, filepath.Join(dir, "annotations")); got != 0o600 {
		t.Errorf("annotations mode %v", got)
	}
	if got := mode(t, filepath.Join(dir, "name")); got != 0o644 {
		t.Errorf("name mode %v", got)
	}
	if os.Geteuid() == 0 {
		if ok, err := isTmpfs(dir); !ok || err != nil {
			t.Errorf("downwardAPI volume is not a tmpfs (%v)", err)
		}
	}

	// Labels change: the file is replaced in place.
	oldData, _ := os.Readlink(filepath.Join(dir, "..data"))
	pod.Labels["tier"] = "back"
	mustSetup(t, e.m, pod)
	if got := readFile(t, filepath.Join(dir, "tier")); got != "back" {
		t.Errorf("tier after update = %q", got)
	}
	if newData, _ := os.Readlink(filepath.Join(dir, "..data")); newData == oldData {
		t.Error("..data did not move to a new timestamped directory")
	}

	bad := newPod("d2", v1.Volume{Name: "info", VolumeSource: v1.VolumeSource{DownwardAPI: &v1.DownwardAPIVolumeSource{
		Items: []v1.DownwardAPIVolumeFile{{Path: "x", FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.nope"}}}}}})
	if err := e.m.Setup(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "unsupported fieldPath: spec.nope") {
		t.Errorf("bad fieldPath: %v", err)
	}
}

// kubeAPIAccess is the volume the ServiceAccount admission plugin adds to
// every pod.
func kubeAPIAccess() v1.Volume {
	return v1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o644),
		Sources: []v1.VolumeProjection{
			{ServiceAccountToken: &v1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}},
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}}}}
}

func TestProjectedKubeAPIAccess(t *testing.T) {
	e := newEnv(t)
	e.src.setConfigMap("ns1", "kube-root-ca.crt", map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----"})
	pod := newPod("p1", kubeAPIAccess())
	pod.Spec.ServiceAccountName = "builder"
	mustSetup(t, e.m, pod)
	dir := e.m.volumeDir(pod.UID, pluginProjected, "kube-api-access-x7k2p")
	for path, want := range map[string]string{"token": "tok-1", "ca.crt": "-----BEGIN CERTIFICATE-----", "namespace": "ns1"} {
		if got := readFile(t, filepath.Join(dir, path)); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
		if got := mode(t, filepath.Join(dir, path)); got != 0o644 {
			t.Errorf("%s mode %v", path, got)
		}
	}
	reqs := e.src.tokenRequests()
	if len(reqs) != 1 {
		t.Fatalf("%d token requests", len(reqs))
	}
	ref := reqs[0].Spec.BoundObjectRef
	if ref == nil || ref.Kind != "Pod" || ref.APIVersion != "v1" || ref.Name != "web" || ref.UID != "p1" ||
		*reqs[0].Spec.ExpirationSeconds != 3607 || len(reqs[0].Spec.Audiences) != 0 {
		t.Errorf("token request %+v", reqs[0].Spec)
	}
	mustSetup(t, e.m, pod)
	if n := len(e.src.tokenRequests()); n != 1 {
		t.Errorf("a fresh token was requested again (%d requests)", n)
	}
	ms, err := e.m.Mounts(pod, &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{
		{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}}}, nil)
	if err != nil || len(ms) != 1 || ms[0].Source != dir || !ms[0].ReadOnly || ms[0].Destination != "/var/run/secrets/kubernetes.io/serviceaccount" {
		t.Errorf("Mounts = %+v, %v", ms, err)
	}

	// Every source is tried; the errors are aggregated and unwrap.
	bad := newPod("p2", v1.Volume{Name: "proj", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
		{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "gone"}}},
		{Secret: &v1.SecretProjection{LocalObjectReference: v1.LocalObjectReference{Name: "gone2"}}},
		{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
	}}}})
	err = e.m.Setup(context.Background(), bad)
	want := `MountVolume.SetUp failed for volume "proj" : [configmap "gone" not found, secret "gone2" not found]`
	if err == nil || err.Error() != want || !apierrors.IsNotFound(err) {
		t.Errorf("error %v, want %q wrapping NotFound", err, want)
	}
	if exists(e.m.volumeDir(bad.UID, pluginProjected, "proj")) {
		t.Error("failed projected volume left behind")
	}

	noSA := newPod("p3", kubeAPIAccess())
	noSA.Spec.ServiceAccountName = "missing"
	err = e.m.Setup(context.Background(), noSA)
	if want := `MountVolume.SetUp failed for volume "kube-api-access-x7k2p" : failed to fetch token: serviceaccounts "missing" not found`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}

	ctb := newPod("p4", v1.Volume{Name: "ctb", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{
		{ClusterTrustBundle: &v1.ClusterTrustBundleProjection{Name: ptr.To("b"), Path: "b.pem"}}}}}})
	if err := e.m.Setup(context.Background(), ctb); err == nil || !strings.Contains(err.Error(), "clusterTrustBundle projections are not supported") {
		t.Errorf("clusterTrustBundle: %v", err)
	}
}

func TestUpdatesInPlace(t *testing.T) {
	e := newEnv(t)
	e.src.setConfigMap("ns1", "cfg", map[string]string{"a": "1", "b": "2"})
	pod := newPod("up1", v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
		LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}})
	mustSetup(t, e.m, pod)
	dir := e.m.volumeDir(pod.UID, pluginConfigMap, "cfg")
	data1, _ := os.Readlink(filepath.Join(dir, "..data"))

	// Unchanged source: nothing moves.
	mustSetup(t, e.m, pod)
	if d, _ := os.Readlink(filepath.Join(dir, "..data")); d != data1 {
		t.Errorf("..data moved without a change: %s -> %s", data1, d)
	}

	// A key changes, one goes, one comes: one swap of ..data.
	e.src.setConfigMap("ns1", "cfg", map[string]string{"a": "10", "c": "3"})
	mustSetup(t, e.m, pod)
	data2, _ := os.Readlink(filepath.Join(dir, "..data"))
	if data2 == data1 {
		t.Fatal("..data did not move")
	}
	if exists(filepath.Join(dir, data1)) {
		t.Error("the old timestamped directory is still there")
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "10" {
		t.Errorf("a = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "c")); got != "3" {
		t.Errorf("c = %q", got)
	}
	if exists(filepath.Join(dir, "b")) {
		t.Error("removed key b still visible")
	}

	// The source disappears: the error is reported, the content stays.
	e.src.deleteConfigMap("ns1", "cfg")
	if err := e.m.Setup(context.Background(), pod); err == nil || !apierrors.IsNotFound(err) {
		t.Errorf("Setup with the configMap gone: %v", err)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "10" {
		t.Errorf("content lost after a failed refresh: a = %q", got)
	}
}

func TestTokenRenewal(t *testing.T) {
	e := newEnv(t)
	e.src.setConfigMap("ns1", "kube-root-ca.crt", map[string]string{"ca.crt": "CA"})
	vol := kubeAPIAccess()
	vol.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds = ptr.To[int64](1000)
	pod := newPod("tok1", vol)
	tokenFile := filepath.Join(e.m.volumeDir(pod.UID, pluginProjected, vol.Name), "token")

	mustSetup(t, e.m, pod)
	if got := readFile(t, tokenFile); got != "tok-1" {
		t.Fatalf("token %q", got)
	}
	e.clock.Step(790 * 1e9) // 79% of the lifetime: kept
	mustSetup(t, e.m, pod)
	if got := readFile(t, tokenFile); got != "tok-1" {
		t.Errorf("token renewed too early: %q", got)
	}
	e.clock.Step(20 * 1e9) // 81%: renewed, the file swapped in place
	mustSetup(t, e.m, pod)
	if got := readFile(t, tokenFile); got != "tok-2" {
		t.Errorf("token not renewed: %q", got)
	}

	// Renewal fails while the token is valid: it is kept, no error.
	e.src.setTokenErr(errors.New("apiserver down"))
	e.clock.Step(900 * 1e9)
	mustSetup(t, e.m, pod)
	if got := readFile(t, tokenFile); got != "tok-2" {
		t.Errorf("token %q", got)
	}
	// ...and once it expired, Setup fails (the file keeps the last token).
	e.clock.Step(200 * 1e9)
	err := e.m.Setup(context.Background(), pod)
	if err == nil || !strings.Contains(err.Error(), "expired and refresh failed: apiserver down") {
		t.Errorf("Setup with an expired token: %v", err)
	}
	e.src.setTokenErr(nil)
	mustSetup(t, e.m, pod)
	if got := readFile(t, tokenFile); got != "tok-3" {
		t.Errorf("token %q after recovery", got)
	}

	// A token lives 24 hours at most before renewal.
	vol.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds = ptr.To[int64](7 * 24 * 3600)
	long := newPod("tok2", vol)
	mustSetup(t, e.m, long)
	longFile := filepath.Join(e.m.volumeDir(long.UID, pluginProjected, vol.Name), "token")
	first := readFile(t, longFile)
	e.clock.Step(23 * 3600 * 1e9)
	mustSetup(t, e.m, long)
	if got := readFile(t, longFile); got != first {
		t.Errorf("renewed before 24h: %q", got)
	}
	e.clock.Step(2 * 3600 * 1e9)
	mustSetup(t, e.m, long)
	if got := readFile(t, longFile); got == first {
		t.Error("not renewed after 24h")
	}

	// Teardown forgets the pod's tokens.
	if err := e.m.Teardown(context.Background(), pod.UID); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.m.pods[pod.UID]; ok {
		t.Error("pod state kept after Teardown")
	}
}

func TestMounts(t *testing.T) {
	e := newEnv(t)
	e.src.setConfigMap("ns1", "cfg", map[string]string{"a": "1"})
	host := t.TempDir()
	pod := newPod("m1",
		v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
		v1.Volume{Name: "host", VolumeSource: v1.VolumeSource{HostPath: &v1.HostPathVolumeSource{Path: host}}},
	)
	mustSetup(t, e.m, pod)
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{
		{Name: "scratch", MountPath: "/scratch"},
		{Name: "scratch", MountPath: "/ro", ReadOnly: true},
		{Name: "cfg", MountPath: "/etc/cfg"}, // always read-only
		{Name: "host", MountPath: "/h1", MountPropagation: ptr.To(v1.MountPropagationHostToContainer)},
		{Name: "host", MountPath: "/h2", MountPropagation: ptr.To(v1.MountPropagationBidirectional)},
		{Name: "host", MountPath: "/h3", MountPropagation: ptr.To(v1.MountPropagationNone)},
		{Name: "scratch", MountPath: "/rro", ReadOnly: true, RecursiveReadOnly: ptr.To(v1.RecursiveReadOnlyIfPossible)},
	}}
	ms, err := e.m.Mounts(pod, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	scratch := e.m.volumeDir(pod.UID, pluginEmptyDir, "scratch")
	want := []struct {
		src, dst, prop string
		ro             bool
	}{
		{scratch, "/scratch", "private", false},
		{scratch, "/ro", "private", true},
		{e.m.volumeDir(pod.UID, pluginConfigMap, "cfg"), "/etc/cfg", "private", true},
		{host, "/h1", "rslave", false},
		{host, "/h2", "rshared", false},
		{host, "/h3", "private", false},
		{scratch, "/rro", "private", true},
	}
	if len(ms) != len(want) {
		t.Fatalf("%d mounts: %+v", len(ms), ms)
	}
	for i, w := range want {
		if ms[i].Source != w.src || ms[i].Destination != w.dst || ms[i].Propagation != w.prop || ms[i].ReadOnly != w.ro {
			t.Errorf("mount %d = %+v, want %+v", i, ms[i], w)
		}
	}

	for _, tc := range []struct {
		vm  v1.VolumeMount
		err string
	}{
		{v1.VolumeMount{Name: "nope", MountPath: "/x"}, `cannot find volume "nope" to mount into container "app"`},
		{v1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "/abs"}, "error SubPath `/abs` must not be an absolute path"},
		{v1.VolumeMount{Name: "scratch", MountPath: "/x", SubPath: "a/../../b"}, "unable to provision SubPath `a/../../b`: must not contain '..'"},
		{v1.VolumeMount{Name: "scratch", MountPath: "/x", SubPathExpr: "$(POD_NAME)/$(NODE)"}, "missing value for NODE, POD_NAME"},
		{v1.VolumeMount{Name: "scratch", MountPath: "/x", RecursiveReadOnly: ptr.To(v1.RecursiveReadOnlyEnabled), ReadOnly: true},
			`failed to resolve recursive read-only mode: volume "scratch" requested recursive read-only mode, but it is not supported by the runtime`},
		{v1.VolumeMount{Name: "scratch", MountPath: "/x", RecursiveReadOnly: ptr.To(v1.RecursiveReadOnlyIfPossible)},
			`requested recursive read-only mode, but it is not read-only`},
		{v1.VolumeMount{Name: "scratch", MountPath: "/x", MountPropagation: ptr.To(v1.MountPropagationMode("Weird"))}, `invalid MountPropagation mode: "Weird"`},
	} {
		_, err := e.m.Mounts(pod, &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{tc.vm}}, map[string]string{"POD_NAME": ""})
		if err == nil || err.Error() != tc.err && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want %q", tc.vm, err, tc.err)
		}
	}

	// A volume that was not set up is not mounted.
	other := newPod("m2", v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	if _, err := e.m.Mounts(other, &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/s"}}}, nil); err == nil ||
		!strings.Contains(err.Error(), `cannot find volume "scratch" to mount into container "app"`) {
		t.Errorf("Mounts before Setup: %v", err)
	}
}

func TestSubPathEscapeRefused(t *testing.T) {
	e := newEnv(t)
	pod := newPod("esc1", v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	mustSetup(t, e.m, pod)
	vol := e.m.volumeDir(pod.UID, pluginEmptyDir, "scratch")
	outside := t.TempDir()
	// What a container could do inside its emptyDir: symlinks out of it.
	if err := os.Symlink(outside, filepath.Join(vol, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(vol, "passwd")); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []string{"out", "passwd", "out/newdir"} {
		_, err := e.m.Mounts(pod, &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/x", SubPath: sp}}}, nil)
		if err == nil {
			t.Errorf("subPath %q through a symlink out of the volume accepted", sp)
			continue
		}
		if !strings.Contains(err.Error(), `subPath directory for volumeMount "scratch" of container "app"`) &&
			!strings.Contains(err.Error(), `failed to prepare subPath for volumeMount "scratch" of container "app"`) {
			t.Errorf("subPath %q: error %v", sp, err)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("something was created outside the volume: %v", entries)
	}
	if left := mountsUnder(t, e.dir); len(left) > 0 {
		t.Errorf("mounts after refused subPaths: %v", left)
	}
}

func TestUnsupportedAndTeardown(t *testing.T) {
	e := newEnv(t)
	pod := newPod("t1",
		v1.Volume{Name: "data", VolumeSource: v1.VolumeSource{PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}},
		v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	err := e.m.Setup(context.Background(), pod)
	if want := `MountVolume.SetUp failed for volume "data" : volume type persistentVolumeClaim is not supported by this node`; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	uids, err := e.m.PodUIDs()
	if err != nil || len(uids) != 1 || uids[0] != "t1" {
		t.Errorf("PodUIDs = %v, %v", uids, err)
	}
	for range 2 { // idempotent
		if err := e.m.Teardown(context.Background(), pod.UID); err != nil {
			t.Fatal(err)
		}
	}
	if exists(e.m.podDir(pod.UID)) {
		t.Error("pod directory left")
	}
	if uids, _ := e.m.PodUIDs(); len(uids) != 0 {
		t.Errorf("PodUIDs after Teardown = %v", uids)
	}
	if err := e.m.Teardown(context.Background(), "../x"); err == nil {
		t.Error("a UID with a path in it was accepted")
	}
}

func TestConcurrentCalls(t *testing.T) {
	e := newEnv(t)
	e.src.setConfigMap("ns1", "kube-root-ca.crt", map[string]string{"ca.crt": "CA"})
	pod := newPod("cc1", kubeAPIAccess(), v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/s"}}}
	mustSetup(t, e.m, pod)
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			if i%2 == 0 {
				errs <- e.m.Setup(context.Background(), pod)
				return
			}
			_, err := e.m.Mounts(pod, c, nil)
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := len(e.src.tokenRequests()); n != 1 {
		t.Errorf("%d token requests for one pod", n)
	}
}
