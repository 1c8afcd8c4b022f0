package image_test

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/image"
)

// whiteoutImage is a two-layer image whose upper layer deletes a file and a
// directory, replaces a file, and makes a directory opaque.
func whiteoutImage(t *testing.T) v1.Image {
	lower := image.MakeLayer(t, "gzip",
		image.TarEntry{Name: "a/", Type: tar.TypeDir},
		image.TarEntry{Name: "a/keep", Body: "keep"},
		image.TarEntry{Name: "a/gone", Body: "gone"},
		image.TarEntry{Name: "a/hard", Type: tar.TypeLink, Link: "a/keep"},
		image.TarEntry{Name: "a/dir/", Type: tar.TypeDir},
		image.TarEntry{Name: "a/dir/file", Body: "in a removed directory"},
		image.TarEntry{Name: "b/replace", Body: "old"},
		image.TarEntry{Name: "opq/", Type: tar.TypeDir, Mode: 0o750},
		image.TarEntry{Name: "opq/x", Body: "x"},
		image.TarEntry{Name: "opq/sub/deep", Body: "deep"},
		image.TarEntry{Name: "link", Type: tar.TypeSymlink, Link: "a/keep"},
		image.TarEntry{Name: "abslink", Type: tar.TypeSymlink, Link: "/etc/passwd"},
		image.TarEntry{Name: "bin/suid", Body: "#!/bin/sh\n", Mode: 0o4755},
		image.TarEntry{Name: "home/user/", Type: tar.TypeDir, Mode: 0o700, UID: 1000, GID: 1000},
		image.TarEntry{Name: "home/user/secret", Body: "s", Mode: 0o600, UID: 1000, GID: 1001},
		image.TarEntry{Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o600},
		image.TarEntry{Name: "xattr", Body: "x", Xattrs: map[string]string{"user.peapod": "yes", "trusted.overlay.opaque": "y"}},
	)
	upper := image.MakeLayer(t, "zstd",
		image.TarEntry{Name: "a/", Type: tar.TypeDir},
		image.TarEntry{Name: "a/.wh.gone"},
		image.TarEntry{Name: "a/.wh.dir"},
		image.TarEntry{Name: "b/replace", Body: "new"},
		image.TarEntry{Name: "opq/", Type: tar.TypeDir, Mode: 0o750},
		image.TarEntry{Name: "opq/.wh..wh..opq"},
		image.TarEntry{Name: "opq/z", Body: "z"},
		image.TarEntry{Name: "c/new", Body: "new file"},
		image.TarEntry{Name: ".wh..wh.plnk/ignored", Body: "aufs metadata"},
	)
	return image.MakeImage(t, v1.Config{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"A=1"},
		WorkingDir: "/srv", User: "1000:1000", ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}},
		Volumes: map[string]struct{}{"/data": {}}, StopSignal: "SIGQUIT", Labels: map[string]string{"k": "v"}}, lower, upper)
}

func TestWhiteoutsAndOverlayMount(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "")
	archive := image.WriteArchiveFile(t, filepath.Join(t.TempDir(), "two.tar"),
		image.ArchiveImage{Image: whiteoutImage(t), Names: []string{"example.com/whiteouts:v1"}})
	mustLoad(t, s, archive)
	dirs, cfg, err := s.Rootfs(ctx, "example.com/whiteouts:v1")
	if err != nil {
		t.Fatal(err)
	}
	want := image.ImageConfig{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"A=1"}, WorkingDir: "/srv",
		User: "1000:1000", ExposedPorts: []string{"53/udp", "8080/tcp"}, Volumes: []string{"/data"}, StopSignal: "SIGQUIT"}
	if !slices.Equal(cfg.Entrypoint, want.Entrypoint) || !slices.Equal(cfg.Cmd, want.Cmd) || !slices.Equal(cfg.Env, want.Env) ||
		cfg.WorkingDir != want.WorkingDir || cfg.User != want.User || !slices.Equal(cfg.ExposedPorts, want.ExposedPorts) ||
		!slices.Equal(cfg.Volumes, want.Volumes) || cfg.StopSignal != want.StopSignal || cfg.Labels["k"] != "v" {
		t.Errorf("config = %+v, want %+v", cfg, want)
	}
	if len(dirs) != 2 {
		t.Fatalf("lowerdirs = %v, want 2", dirs)
	}
	upper, lower := dirs[0], dirs[1]

	// The layer directories hold overlayfs' forms of the whiteouts.
	for _, p := range []string{"a/gone", "a/dir"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(upper, p), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s in the upper layer: mode %o rdev %d, %v: want a 0/0 character device", p, st.Mode, st.Rdev, err)
		}
	}
	if v := getxattr(t, filepath.Join(upper, "opq"), "trusted.overlay.opaque"); v != "y" {
		t.Errorf("opq's trusted.overlay.opaque = %q, want y", v)
	}
	if _, err := os.Lstat(filepath.Join(upper, ".wh..wh.plnk")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AUFS metadata was unpacked: %v", err)
	}
	if v := getxattr(t, filepath.Join(lower, "xattr"), "trusted.overlay.opaque"); v != "" {
		t.Errorf("an image set trusted.overlay.opaque on a file: %q", v)
	}
	if a, b := statT(t, filepath.Join(lower, "a/keep")), statT(t, filepath.Join(lower, "a/hard")); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("a/hard is not a hard link of a/keep: inodes %d, %d, links %d", a.Ino, b.Ino, a.Nlink)
	}
	if fi, err := os.Stat(filepath.Join(lower, "a/keep")); err != nil || !fi.ModTime().Equal(image.EntryTime()) {
		t.Errorf("a/keep mtime: %v, %v, want %v", fi, err, image.EntryTime())
	}
	if fi, err := os.Stat(filepath.Join(lower, "opq")); err != nil || !fi.ModTime().Equal(image.EntryTime()) || fi.Mode().Perm() != 0o750 {
		t.Errorf("directory opq: %v, %v: want mode 0750 and the entry's mtime", fi, err)
	}

	merged := mountOverlay(t, dirs)
	expectContent := map[string]string{"a/keep": "keep", "a/hard": "keep", "b/replace": "new", "opq/z": "z", "c/new": "new file", "link": "keep"}
	for p, want := range expectContent {
		if b, err := os.ReadFile(filepath.Join(merged, p)); err != nil || string(b) != want {
			t.Errorf("merged %s = %q, %v, want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"a/gone", "a/dir", "a/dir/file", "opq/x", "opq/sub"} {
		if _, err := os.Lstat(filepath.Join(merged, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("merged %s: %v, want it deleted", p, err)
		}
	}
	if got := readDirNames(t, filepath.Join(merged, "opq")); !slices.Equal(got, []string{"z"}) {
		t.Errorf("merged opaque directory lists %v, want [z]", got)
	}
	if got := readDirNames(t, filepath.Join(merged, "a")); !slices.Equal(got, []string{"hard", "keep"}) {
		t.Errorf("merged a lists %v, want [hard keep]", got)
	}
	if target, err := os.Readlink(filepath.Join(merged, "abslink")); err != nil || target != "/etc/passwd" {
		t.Errorf("abslink -> %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(merged, "bin/suid")); err != nil || fi.Mode()&fs.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/suid mode: %v, %v: want setuid 0755", fi.Mode(), err)
	}
	if st := statT(t, filepath.Join(merged, "home/user/secret")); st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o777 != 0o600 {
		t.Errorf("home/user/secret: uid %d gid %d mode %o, want 1000 1001 0600", st.Uid, st.Gid, st.Mode&0o777)
	}
	if st := statT(t, filepath.Join(merged, "home/user")); st.Uid != 1000 || st.Mode&0o777 != 0o700 {
		t.Errorf("home/user: uid %d mode %o, want 1000 0700", st.Uid, st.Mode&0o777)
	}
	if fi, err := os.Lstat(filepath.Join(merged, "run/fifo")); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("run/fifo: %v, %v: want a FIFO", fi, err)
	}
	if v := getxattr(t, filepath.Join(merged, "xattr"), "user.peapod"); v != "yes" {
		t.Errorf("xattr user.peapod = %q, want yes", v)
	}
	// Writes go to the container's upper directory, never into shared layers.
	if err := os.WriteFile(filepath.Join(merged, "a/keep"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "a/keep")); string(b) != "keep" {
		t.Errorf("a write through the overlay changed the shared layer: %q", b)
	}
}

// mountOverlay mounts lowerdirs with a fresh upper and work directory and
// unmounts it when the test ends, whatever its outcome.
func mountOverlay(t *testing.T, lowerdirs []string) string {
	t.Helper()
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + strings.Join(lowerdirs, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		prerequisite(t, "overlayfs mount: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}

func getxattr(t *testing.T, p, name string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, buf)
	if errors.Is(err, unix.ENODATA) {
		return ""
	}
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", p, name, err)
	}
	return string(buf[:n])
}

func statT(t *testing.T, p string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestOpaqueLayerRoot: ".wh..wh..opq" at the top of a layer hides every lower
// layer.
func TestOpaqueLayerRoot(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "")
	img := image.MakeImage(t, v1.Config{},
		image.MakeLayer(t, "", image.TarEntry{Name: "old", Body: "old"}, image.TarEntry{Name: "dir/old", Body: "old"}),
		image.MakeLayer(t, "", image.TarEntry{Name: ".wh..wh..opq"}, image.TarEntry{Name: "new", Body: "new"}))
	if _, err := s.Import(ctx, img, "example.com/opaque-root:1"); err != nil {
		t.Fatal(err)
	}
	dirs, _, err := s.Rootfs(ctx, "example.com/opaque-root:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 1 {
		t.Errorf("lowerdirs = %v, want only the layer with the opaque root", dirs)
	}
	if v := getxattr(t, dirs[0], "trusted.overlay.opaque"); v != "y" {
		t.Fatalf("layer root opaque xattr = %q, want y", v)
	}
	merged := mountOverlay(t, dirs)
	if got := readDirNames(t, merged); !slices.Equal(got, []string{"new"}) {
		t.Errorf("merged root lists %v, want [new]", got)
	}
}
