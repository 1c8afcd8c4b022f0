package image_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/image/busybox"
)

func TestLoadBusyboxArchive(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "")
	archive := busyboxArchive(t)
	imgs := mustLoad(t, s, archive)
	if got, want := names(imgs), busybox.Names(); !slices.Equal(got, want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(list), []string{busybox.Name, busybox.NameLatest}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	for _, img := range list {
		if img.ID != list[0].ID || !strings.HasPrefix(img.ID, "sha256:") || img.Size < 1<<20 {
			t.Errorf("image %+v: want one ID shared by both names and a size over 1 MiB", img)
		}
		if want := "docker.io/library/busybox@" + img.Digest; img.RepoDigest != want {
			t.Errorf("RepoDigest = %q, want %q", img.RepoDigest, want)
		}
		if img.Stored.IsZero() {
			t.Errorf("Stored is zero")
		}
	}
	// Normalized lookups: "busybox" is docker.io/library/busybox:latest.
	for _, ref := range []string{"busybox", "busybox:latest", "library/busybox:1.36", "docker.io/library/busybox:1.36", list[0].ID, list[0].RepoDigest} {
		if _, err := s.Get(ctx, ref); err != nil {
			t.Errorf("Get(%q): %v", ref, err)
		}
	}
	if _, err := s.Get(ctx, "busybox:1.35"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Get(busybox:1.35) = %v, want ErrNotFound", err)
	}

	dirs, cfg, err := s.Rootfs(ctx, "busybox")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Cmd, []string{"sh"}) || !slices.Equal(cfg.Env, []string{busybox.Path}) || cfg.Entrypoint != nil {
		t.Errorf("config = %+v, want Cmd [sh] and Env [%s]", cfg, busybox.Path)
	}
	if len(dirs) != 1 || !strings.HasPrefix(dirs[0], filepath.Join(s.Root(), "layers")+"/") {
		t.Fatalf("lowerdirs = %v, want one directory under %s/layers", dirs, s.Root())
	}
	layer := dirs[0]
	for _, p := range []string{"bin/sh", "usr/bin/wget", "usr/sbin/httpd", "bin/sleep"} {
		if target, err := os.Readlink(filepath.Join(layer, p)); err != nil || !strings.HasSuffix(target, "busybox") {
			t.Errorf("%s -> %q, %v: want a link to busybox", p, target, err)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(layer, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "root:x:0:0:") || !strings.Contains(string(passwd), "nobody:x:65534:65534:") {
		t.Errorf("etc/passwd = %q, %v", passwd, err)
	}
	if fi, err := os.Stat(filepath.Join(layer, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v, %v: want drwxrwxrwt", fi.Mode(), err)
	}
	// The unpacked busybox runs (it is static) and its applet links work.
	out, err := exec.Command(filepath.Join(layer, "bin/sh"), "-c", "echo hello from $0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from") {
		t.Errorf("layer's bin/sh: %q, %v", out, err)
	}

	// Loading again changes nothing on disk and unpacks nothing again.
	before := readDirNames(t, filepath.Join(s.Root(), "layers"))
	mustLoad(t, s, archive)
	if after := readDirNames(t, filepath.Join(s.Root(), "layers")); !slices.Equal(before, after) {
		t.Errorf("layers after reload = %v, want %v", after, before)
	}
	// A second store on the same directory sees the same images.
	s2 := openStore(t, s.Root())
	list2, err := s2.List(ctx)
	if err != nil || !slices.Equal(names(list2), names(list)) {
		t.Errorf("second store lists %v, %v", names(list2), err)
	}
}

// TestBusyboxScript runs hack/busybox-image.sh and checks that its output is
// byte for byte what the in-process builder makes: the archive is deterministic.
func TestBusyboxScript(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		prerequisite(t, "go on PATH: %v", err)
	}
	want, err := os.ReadFile(busyboxArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.tar")
	cmd := exec.Command("../../hack/busybox-image.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/busybox-image.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("script output (sha256 %x) differs from the in-process build (sha256 %x)", sha256.Sum256(got), sha256.Sum256(want))
	}
}

// twoImages makes two images sharing a base layer: base+one and base+two.
func twoImages(t *testing.T) (v1.Image, v1.Image) {
	base := image.MakeLayer(t, "gzip", image.TarEntry{Name: "base/file", Body: "base"})
	one := image.MakeLayer(t, "", image.TarEntry{Name: "one/file", Body: "one"})
	two := image.MakeLayer(t, "zstd", image.TarEntry{Name: "two/file", Body: "two"})
	return image.MakeImage(t, v1.Config{Cmd: []string{"one"}}, base, one), image.MakeImage(t, v1.Config{Cmd: []string{"two"}}, base, two)
}

func TestRemoveCollectsUnusedContent(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "")
	one, two := twoImages(t)
	if _, err := s.Import(ctx, one, "example.com/one:1", "example.com/one:latest"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, two, "example.com/two:1"); err != nil {
		t.Fatal(err)
	}
	layersDir := filepath.Join(s.Root(), "layers")
	blobsDir := filepath.Join(s.Root(), "blobs", "sha256")
	if n := len(readDirNames(t, layersDir)); n != 3 {
		t.Fatalf("%d layers unpacked, want 3 (the base is shared)", n)
	}
	if n := len(readDirNames(t, blobsDir)); n != 7 {
		t.Fatalf("%d blobs, want 7 (3 layers, 2 configs, 2 manifests)", n)
	}
	// Removing one name of two keeps the content.
	if removed, err := s.Remove(ctx, "example.com/one:latest"); err != nil || !slices.Equal(removed, []string{"example.com/one:latest"}) {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if n := len(readDirNames(t, layersDir)); n != 3 {
		t.Fatalf("%d layers after removing one of two names, want 3", n)
	}
	// Removing the image by ID removes its last name and its own content only.
	img, err := s.Get(ctx, "example.com/one:1")
	if err != nil {
		t.Fatal(err)
	}
	if removed, err := s.Remove(ctx, img.ID); err != nil || !slices.Equal(removed, []string{"example.com/one:1"}) {
		t.Fatalf("Remove(ID) = %v, %v", removed, err)
	}
	if n := len(readDirNames(t, layersDir)); n != 2 {
		t.Fatalf("%d layers after removing image one, want 2 (base and two)", n)
	}
	if n := len(readDirNames(t, blobsDir)); n != 4 {
		t.Fatalf("%d blobs after removing image one, want 4", n)
	}
	if dirs, _, err := s.Rootfs(ctx, "example.com/two:1"); err != nil || len(dirs) != 2 {
		t.Fatalf("Rootfs(two) = %v, %v", dirs, err)
	}

	// A hold keeps the content of a removed image until it is released.
	dirs, cfg, err := s.Acquire(ctx, "container-1", "example.com/two:1")
	if err != nil || !slices.Equal(cfg.Cmd, []string{"two"}) {
		t.Fatalf("Acquire = %v, %+v, %v", dirs, cfg, err)
	}
	if h, err := s.Holders(); err != nil || !slices.Equal(h, []string{"container-1"}) {
		t.Fatalf("Holders = %v, %v", h, err)
	}
	if _, err := s.Remove(ctx, "example.com/two:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "example.com/two:1"); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("Get after Remove = %v, want ErrNotFound", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("held layer %s collected: %v", d, err)
		}
	}
	if err := s.Release("container-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("container-1"); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if l, b := readDirNames(t, layersDir), readDirNames(t, blobsDir); len(l)+len(b) != 0 {
		t.Fatalf("after the last release: layers %v, blobs %v, want none", l, b)
	}
	if left := readDirNames(t, filepath.Join(s.Root(), "tmp")); len(left) != 0 {
		t.Fatalf("tmp not empty: %v", left)
	}
	if _, err := s.Remove(ctx, "example.com/two:1"); !errors.Is(err, image.ErrNotFound) {
		t.Fatalf("Remove of a removed image = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Acquire(ctx, "../x", "example.com/two:1"); !errors.Is(err, image.ErrInvalidHolder) {
		t.Fatalf("Acquire(../x) = %v, want ErrInvalidHolder", err)
	}
}

func TestRetagCollectsOldImage(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "")
	one, two := twoImages(t)
	if _, err := s.Import(ctx, one, "example.com/app:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, two, "example.com/app:1"); err != nil {
		t.Fatal(err)
	}
	_, cfg, err := s.Rootfs(ctx, "example.com/app:1")
	if err != nil || !slices.Equal(cfg.Cmd, []string{"two"}) {
		t.Fatalf("after re-tag: %+v, %v", cfg, err)
	}
	if n := len(readDirNames(t, filepath.Join(s.Root(), "layers"))); n != 2 {
		t.Fatalf("%d layers after re-tag, want 2 (the old image's own layer collected)", n)
	}
}

func TestStoreErrors(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, "")
	for _, ref := range []string{"Busybox", "busybox:", "busybox@sha256:abc", "", " busybox"} {
		if _, _, err := s.Rootfs(ctx, ref); !errors.Is(err, image.ErrInvalidReference) {
			t.Errorf("Rootfs(%q) = %v, want ErrInvalidReference", ref, err)
		}
		if _, err := s.Pull(ctx, ref, nil); !errors.Is(err, image.ErrInvalidReference) {
			t.Errorf("Pull(%q) = %v, want ErrInvalidReference", ref, err)
		}
	}
	if _, _, err := s.Rootfs(ctx, "busybox"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Rootfs of a missing image = %v, want ErrNotFound", err)
	}
	if _, err := s.Remove(ctx, "sha256:"+strings.Repeat("a", 64)); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Remove of a missing ID = %v, want ErrNotFound", err)
	}
	if _, err := s.Import(ctx, image.MakeImage(t, v1.Config{}), "Bad"); !errors.Is(err, image.ErrInvalidReference) {
		t.Errorf("Import under an invalid name = %v, want ErrInvalidReference", err)
	}
	foreign := image.MakeImage(t, v1.Config{})
	if _, err := s.Import(ctx, foreign, "example.com/empty:1"); err != nil {
		t.Errorf("Import of an image without layers: %v", err)
	}
	if dirs, _, err := s.Rootfs(ctx, "example.com/empty:1"); err != nil || len(dirs) != 0 {
		t.Errorf("Rootfs of an image without layers = %v, %v", dirs, err)
	}
	if err := os.WriteFile(filepath.Join(s.Root(), "index.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx); !errors.Is(err, image.ErrCorrupt) {
		t.Errorf("List with a corrupt index = %v, want ErrCorrupt", err)
	}
	if err := s.GC(ctx); !errors.Is(err, image.ErrCorrupt) {
		t.Errorf("GC with a corrupt index = %v, want ErrCorrupt (and no collection)", err)
	}
}
