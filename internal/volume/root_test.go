package volume

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// Tests here mount (tmpfs, subPath bind mounts) and chown: root only.

func TestMemoryEmptyDirSizeLimit(t *testing.T) {
	testutil.RequireRoot(t)
	e := newEnv(t)
	pod := newPod("mem1", v1.Volume{Name: "cache", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{
		Medium: v1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("1Mi"))}}})
	mustSetup(t, e.m, pod)
	dir := e.m.volumeDir(pod.UID, pluginEmptyDir, "cache")
	if ok, err := isTmpfs(dir); !ok || err != nil {
		t.Fatalf("not a tmpfs (%v)", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size != 1<<20 {
		t.Errorf("tmpfs size %d, want 1Mi", size)
	}
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(make([]byte, 2<<20))
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("writing 2Mi into a 1Mi emptyDir: %v, want ENOSPC", err)
	}
	// Setup again: the same mount, its content kept, nothing stacked.
	if err := os.WriteFile(filepath.Join(dir, "big"), []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSetup(t, e.m, pod)
	if got := readFile(t, filepath.Join(dir, "big")); got != "small" {
		t.Errorf("content after a second Setup: %q", got)
	}
	if n := len(mountsUnder(t, e.dir)); n != 1 {
		t.Errorf("%d mounts after a second Setup, want 1", n)
	}

	// Without sizeLimit the pod's memory limit bounds it (every container
	// has one); without both, the node's allocatable memory (1Gi here).
	limited := newPod("mem2", v1.Volume{Name: "cache", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}})
	limited.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("8Mi")}
	mustSetup(t, e.m, limited)
	if err := unix.Statfs(e.m.volumeDir(limited.UID, pluginEmptyDir, "cache"), &st); err != nil {
		t.Fatal(err)
	}
	if size := int64(st.Blocks) * st.Bsize; size != 8<<20 {
		t.Errorf("tmpfs size %d, want the pod's 8Mi limit", size)
	}

	for _, p := range []*v1.Pod{pod, limited} {
		if err := e.m.Teardown(context.Background(), p.UID); err != nil {
			t.Fatal(err)
		}
	}
	if left := mountsUnder(t, e.dir); len(left) > 0 {
		t.Errorf("mounts left after Teardown: %v", left)
	}
}

func TestSecretOnTmpfsAndTeardown(t *testing.T) {
	testutil.RequireRoot(t)
	e := newEnv(t)
	e.src.setSecret("ns1", "creds", map[string][]byte{"pass": []byte("s3cret")})
	e.src.setConfigMap("ns1", "kube-root-ca.crt", map[string]string{"ca.crt": "CA"})
	pod := newPod("sec1",
		v1.Volume{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "creds"}}},
		v1.Volume{Name: "cache", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory}}},
		kubeAPIAccess(),
	)
	mustSetup(t, e.m, pod)
	for _, dir := range []string{
		e.m.volumeDir(pod.UID, pluginSecret, "creds"),
		e.m.volumeDir(pod.UID, pluginProjected, "kube-api-access-x7k2p"),
	} {
		if ok, err := isTmpfs(dir); !ok || err != nil {
			t.Errorf("%s is not a tmpfs (%v)", dir, err)
		}
		// The root of the tmpfs keeps tmpfs' default mode, as upstream.
		if got := mode(t, dir); got != os.ModeDir|os.ModeSticky|0o777 {
			t.Errorf("%s mode %v", dir, got)
		}
	}
	if mi, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(e.m.volumeDir(pod.UID, pluginSecret, "creds"))); err != nil || len(mi) != 1 {
		t.Errorf("secret mount not in mountinfo: %v %v", mi, err)
	} else if !strings.Contains(mi[0].VFSOptions, "noswap") {
		t.Logf("secret tmpfs without noswap (kernel before 6.4?): %s", mi[0].VFSOptions)
	}
	if got := readFile(t, filepath.Join(e.m.volumeDir(pod.UID, pluginSecret, "creds"), "pass")); got != "s3cret" {
		t.Errorf("pass = %q", got)
	}
	// A subPath bind mount too, to see Teardown remove every kind of mount.
	if _, err := e.m.Mounts(pod, &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{{Name: "cache", MountPath: "/c", SubPath: "x/y"}}}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(mountsUnder(t, e.m.podDir(pod.UID))); n != 4 {
		t.Errorf("%d mounts, want 4 (3 tmpfs, 1 subPath)", n)
	}
	if err := e.m.Teardown(context.Background(), pod.UID); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, e.dir); len(left) > 0 {
		t.Errorf("mounts left after Teardown: %v", left)
	}
	if exists(e.m.podDir(pod.UID)) {
		t.Error("pod directory left after Teardown")
	}

	// A failing secret volume that got its tmpfs unmounts it again.
	bad := newPod("sec2", v1.Volume{Name: "creds", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{
		SecretName: "creds", Items: []v1.KeyToPath{{Key: "pass", Path: "../escape"}}}}})
	if err := e.m.Setup(context.Background(), bad); err == nil {
		t.Fatal("a payload path with .. was written")
	}
	if left := mountsUnder(t, e.dir); len(left) > 0 {
		t.Errorf("mounts left by a failed volume: %v", left)
	}
	if exists(e.m.volumeDir(bad.UID, pluginSecret, "creds")) {
		t.Error("failed volume directory left")
	}
}

func TestFSGroup(t *testing.T) {
	testutil.RequireRoot(t)
	e := newEnv(t)
	e.src.setConfigMap("ns1", "cfg", map[string]string{"a": "1"})
	e.src.setConfigMap("ns1", "kube-root-ca.crt", map[string]string{"ca.crt": "CA"})
	pod := newPod("fsg1",
		v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{
			LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}, DefaultMode: ptr.To[int32](0o600)}}},
		kubeAPIAccess(),
	)
	pod.Spec.SecurityContext = &v1.PodSecurityContext{FSGroup: ptr.To[int64](4321), RunAsUser: ptr.To[int64](1234)}
	mustSetup(t, e.m, pod)

	statOf := func(p string) *syscall.Stat_t {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	scratch := e.m.volumeDir(pod.UID, pluginEmptyDir, "scratch")
	if st := statOf(scratch); st.Gid != 4321 {
		t.Errorf("emptyDir gid %d", st.Gid)
	}
	if got := mode(t, scratch); got != os.ModeDir|os.ModeSetgid|0o777 {
		t.Errorf("emptyDir mode %v, want setgid 0777", got)
	}
	cfgFile := filepath.Join(e.m.volumeDir(pod.UID, pluginConfigMap, "cfg"), "a")
	if st := statOf(cfgFile); st.Gid != 4321 {
		t.Errorf("configMap file gid %d", st.Gid)
	}
	if got := mode(t, cfgFile); got != 0o640 {
		t.Errorf("configMap file mode %v, want 0640 (0600 + g+r)", got)
	}
	token := filepath.Join(e.m.volumeDir(pod.UID, pluginProjected, "kube-api-access-x7k2p"), "token")
	if st := statOf(token); st.Gid != 4321 || st.Uid != 1234 {
		t.Errorf("token owner %d:%d, want 1234:4321 (the pod's only runAsUser, fsGroup)", st.Uid, st.Gid)
	}
	if got := mode(t, token); got != 0o640 {
		t.Errorf("token mode %v, want 0640", got)
	}
	// An update keeps the ownership.
	e.src.setConfigMap("ns1", "cfg", map[string]string{"a": "2"})
	mustSetup(t, e.m, pod)
	if st := statOf(cfgFile); st.Gid != 4321 || readFile(t, cfgFile) != "2" {
		t.Errorf("after update: gid %d, content %q", st.Gid, readFile(t, cfgFile))
	}
}

func TestSubPath(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mount", "")
	e := newEnv(t)
	e.src.setConfigMap("ns1", "cfg", map[string]string{"app.conf": "v1"})
	pod := newPod("sp1",
		v1.Volume{Name: "scratch", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}},
		v1.Volume{Name: "cfg", VolumeSource: v1.VolumeSource{ConfigMap: &v1.ConfigMapVolumeSource{LocalObjectReference: v1.LocalObjectReference{Name: "cfg"}}}},
	)
	mustSetup(t, e.m, pod)
	scratch := e.m.volumeDir(pod.UID, pluginEmptyDir, "scratch")
	c := &v1.Container{Name: "app", VolumeMounts: []v1.VolumeMount{
		{Name: "scratch", MountPath: "/data", SubPath: "a/b"},
		{Name: "scratch", MountPath: "/logs", SubPathExpr: "logs/$(POD_NAME)"},
		{Name: "cfg", MountPath: "/etc/app.conf", SubPath: "app.conf"},
	}}
	ms, err := e.m.Mounts(pod, c, map[string]string{"POD_NAME": "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("mounts %+v", ms)
	}
	// The subPath dir was created in the volume with the volume's mode, and
	// what is returned is a bind mount of it under volume-subpaths.
	if got := mode(t, filepath.Join(scratch, "a/b")); got != os.ModeDir|0o777 {
		t.Errorf("subPath dir mode %v", got)
	}
	wantSrc := filepath.Join(e.m.podDir(pod.UID), "volume-subpaths", "scratch", "app", "0")
	if ms[0].Source != wantSrc || ms[0].Destination != "/data" {
		t.Errorf("mount 0 = %+v, want source %s", ms[0], wantSrc)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(scratch, "a/b/f")); got != "x" {
		t.Errorf("write through the subPath mount not in the volume: %q", got)
	}
	if !exists(filepath.Join(scratch, "logs/web")) {
		t.Error("subPathExpr directory logs/web not created")
	}
	if got := readFile(t, ms[2].Source); got != "v1" || !ms[2].ReadOnly {
		t.Errorf("configMap subPath = %q (ro %v)", got, ms[2].ReadOnly)
	}

	// Mounts again (a container restart): the same mounts, none stacked.
	before := len(mountsUnder(t, e.dir))
	if _, err := e.m.Mounts(pod, c, map[string]string{"POD_NAME": "web"}); err != nil {
		t.Fatal(err)
	}
	if after := len(mountsUnder(t, e.dir)); after != before {
		t.Errorf("mounts %d -> %d after a second Mounts", before, after)
	}

	// A configMap update swaps ..data in the volume, but a subPath bind
	// mount is of the old file: it keeps the old content (as upstream)
	// until the container starts again and Mounts binds the new file.
	e.src.setConfigMap("ns1", "cfg", map[string]string{"app.conf": "v2"})
	mustSetup(t, e.m, pod)
	if got := readFile(t, filepath.Join(e.m.volumeDir(pod.UID, pluginConfigMap, "cfg"), "app.conf")); got != "v2" {
		t.Errorf("volume app.conf = %q", got)
	}
	if got := readFile(t, ms[2].Source); got != "v1" {
		t.Errorf("subPath file = %q: expected the old content", got)
	}
	ms, err = e.m.Mounts(pod, c, map[string]string{"POD_NAME": "web"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, ms[2].Source); got != "v2" {
		t.Errorf("subPath file after the restart = %q", got)
	}

	// Symlinks that stay inside the volume are followed.
	if err := os.Symlink("a", filepath.Join(scratch, "alias")); err != nil {
		t.Fatal(err)
	}
	ms, err = e.m.Mounts(pod, &v1.Container{Name: "side", VolumeMounts: []v1.VolumeMount{{Name: "scratch", MountPath: "/d", SubPath: "alias/b"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(ms[0].Source, "f")); got != "x" {
		t.Errorf("through an inner symlink: %q", got)
	}

	if err := e.m.Teardown(context.Background(), pod.UID); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(t, e.dir); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}
