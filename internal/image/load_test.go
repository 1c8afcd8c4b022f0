package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	legacytarball "github.com/google/go-containerregistry/pkg/legacy/tarball"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/peapod-dev/peapod/internal/image"
)

// TestLoadDockerSave loads the two `docker save` formats: the legacy one
// (<id>/layer.tar, uncompressed, what Docker before 25 writes) and
// go-containerregistry's (<digest>.tar.gz layers), two images sharing a layer.
func TestLoadDockerSave(t *testing.T) {
	ctx := context.Background()
	one, two := twoImages(t)
	refs := map[name.Reference]v1.Image{}
	for n, img := range map[string]v1.Image{"example.com/one:1": one, "example.com/two:1": two} {
		r, err := name.ParseReference(n)
		if err != nil {
			t.Fatal(err)
		}
		refs[r] = img
	}
	writers := map[string]func(*bytes.Buffer) error{
		"legacy": func(b *bytes.Buffer) error { return legacytarball.MultiWrite(refs, b) },
		"ggcr":   func(b *bytes.Buffer) error { return tarball.MultiRefWrite(refs, b) },
	}
	for format, write := range writers {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := write(&buf); err != nil {
				t.Fatal(err)
			}
			if format == "legacy" && !strings.Contains(listTar(t, buf.Bytes()), "/layer.tar") {
				t.Fatalf("legacy archive without <id>/layer.tar: %s", listTar(t, buf.Bytes()))
			}
			s := openStore(t, "")
			imgs, err := s.Load(ctx, &buf)
			if err != nil {
				t.Fatal(err)
			}
			got := names(imgs)
			slices.Sort(got)
			if want := []string{"example.com/one:1", "example.com/two:1"}; !slices.Equal(got, want) {
				t.Fatalf("loaded %v, want %v", got, want)
			}
			for n, wantFile := range map[string]string{"example.com/one:1": "one/file", "example.com/two:1": "two/file"} {
				dirs, cfg, err := s.Rootfs(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				if len(dirs) != 2 || !slices.Equal(cfg.Cmd, []string{strings.TrimSuffix(wantFile, "/file")}) {
					t.Errorf("%s: %v, %+v", n, dirs, cfg)
					continue
				}
				if _, err := os.Stat(filepath.Join(dirs[0], wantFile)); err != nil {
					t.Errorf("%s: %v", n, err)
				}
				if _, err := os.Stat(filepath.Join(dirs[1], "base/file")); err != nil {
					t.Errorf("%s: %v", n, err)
				}
			}
			if n := len(readDirNames(t, filepath.Join(s.Root(), "layers"))); n != 3 {
				t.Errorf("%d layers unpacked, want 3 (the base shared)", n)
			}
			// The image ID is the config digest, as Docker's is.
			img, err := s.Get(ctx, "example.com/one:1")
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := one.ConfigName(); img.ID != want.String() {
				t.Errorf("ID = %s, want %s", img.ID, want)
			}
		})
	}
}

func listTar(t *testing.T, b []byte) string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return strings.Join(names, " ")
}

// TestLoadCompressedArchive loads a gzipped archive (`docker save | gzip`).
func TestLoadCompressedArchive(t *testing.T) {
	one, _ := twoImages(t)
	var plain, gz bytes.Buffer
	if err := image.WriteArchive(&plain, image.ArchiveImage{Image: one, Names: []string{"one"}}); err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	s := openStore(t, "")
	imgs, err := s.Load(context.Background(), &gz)
	if err != nil || !slices.Equal(names(imgs), []string{"docker.io/library/one:latest"}) {
		t.Fatalf("Load = %v, %v", names(imgs), err)
	}
}

// TestLoadOCILayoutWithIndex loads an OCI layout (written by go-containerregistry's
// layout package) whose named entry is a multi-platform index, and one whose
// name is a bare tag in org.opencontainers.image.ref.name (skipped).
func TestLoadOCILayoutWithIndex(t *testing.T) {
	ctx := context.Background()
	native := image.MakeImage(t, v1.Config{Cmd: []string{"native"}}, image.MakeLayer(t, "gzip", image.TarEntry{Name: "native", Body: "n"}))
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	other := image.MakePlatformImage(t, otherArch, v1.Config{Cmd: []string{"other"}}, image.MakeLayer(t, "gzip", image.TarEntry{Name: "other", Body: "o"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "example.com/multi:1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(native, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "1.0"})); err != nil {
		t.Fatal(err)
	}
	archive := tarDir(t, dir)
	s := openStore(t, "")
	imgs, err := s.Load(ctx, bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(imgs), []string{"example.com/multi:1"}) {
		t.Fatalf("loaded %v, want [example.com/multi:1]", names(imgs))
	}
	_, cfg, err := s.Rootfs(ctx, "example.com/multi:1")
	if err != nil || !slices.Equal(cfg.Cmd, []string{"native"}) {
		t.Fatalf("Rootfs = %+v, %v: want this machine's platform", cfg, err)
	}
	idxDigest, _ := idx.Digest()
	if imgs[0].RepoDigest != "example.com/multi@"+idxDigest.String() {
		t.Errorf("RepoDigest = %s, want the index digest %s", imgs[0].RepoDigest, idxDigest)
	}
}

// tarDir tars a directory (regular files and directories).
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = rel
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

func TestLoadInvalidArchives(t *testing.T) {
	ctx := context.Background()
	one, _ := twoImages(t)
	var good bytes.Buffer
	if err := image.WriteArchive(&good, image.ArchiveImage{Image: one, Names: []string{"example.com/one:1"}}); err != nil {
		t.Fatal(err)
	}
	// Drop the layer blobs: the archive names blobs it does not have.
	m, _ := one.Manifest()
	missing := filterTar(t, good.Bytes(), func(n string) bool { return !strings.HasSuffix(n, m.Layers[1].Digest.Hex) })
	// A blob whose content does not match its name.
	corrupt := mapTar(t, good.Bytes(), func(n string, b []byte) []byte {
		if strings.HasSuffix(n, m.Config.Digest.Hex) {
			return bytes.Replace(b, []byte("linux"), []byte("LINUX"), 1)
		}
		return b
	})
	unnamed := mapTar(t, good.Bytes(), func(n string, b []byte) []byte {
		if n == "index.json" {
			var idx v1.IndexManifest
			json.Unmarshal(b, &idx)
			for i := range idx.Manifests {
				idx.Manifests[i].Annotations = nil
			}
			b, _ = json.Marshal(idx)
		}
		return b
	})
	unnamed = filterTar(t, unnamed, func(n string) bool { return n != "manifest.json" })
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, image.ErrInvalidArchive},
		{"not a tar", []byte("hello, this is not a tar archive at all, not even close...."), image.ErrInvalidArchive},
		{"no metadata", LayerTarOf(t, image.TarEntry{Name: "x", Body: "y"}), image.ErrInvalidArchive},
		{"missing blob", missing, image.ErrInvalidArchive},
		{"digest mismatch", corrupt, image.ErrCorrupt},
		{"no named image", unnamed, image.ErrInvalidArchive},
		{"escaping entry", LayerTarOf(t, image.TarEntry{Name: "../../evil.json", Body: "{}"}), image.ErrInvalidArchive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, "")
			if _, err := s.Load(ctx, bytes.NewReader(tc.data)); !errors.Is(err, tc.want) {
				t.Fatalf("Load = %v, want %v", err, tc.want)
			}
			if list, err := s.List(ctx); err != nil || len(list) != 0 {
				t.Fatalf("List after a failed load = %v, %v", list, err)
			}
		})
	}
}

// LayerTarOf is image.LayerTar.
func LayerTarOf(t *testing.T, entries ...image.TarEntry) []byte { return image.LayerTar(t, entries...) }

func filterTar(t *testing.T, b []byte, keep func(string) bool) []byte {
	return rewriteTar(t, b, func(n string, data []byte) ([]byte, bool) { return data, keep(n) })
}

func mapTar(t *testing.T, b []byte, f func(string, []byte) []byte) []byte {
	return rewriteTar(t, b, func(n string, data []byte) ([]byte, bool) { return f(n, data), true })
}

func rewriteTar(t *testing.T, b []byte, f func(string, []byte) ([]byte, bool)) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var data bytes.Buffer
		data.ReadFrom(tr)
		nb, keep := f(h.Name, data.Bytes())
		if !keep {
			continue
		}
		h.Size = int64(len(nb))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(nb)
	}
	tw.Close()
	return out.Bytes()
}

// TestLayerPathTraversal loads layers whose entries try to leave the layer
// directory; each must fail with ErrInvalidLayer and write nothing outside it.
func TestLayerPathTraversal(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(base, "a", "b", "images")
	// From a layer directory (<store>/tmp/layer-*/), this many ".." reach base.
	up := strings.Repeat("../", 5)
	for _, tc := range []struct {
		name    string
		entries []image.TarEntry
	}{
		{"dotdot", []image.TarEntry{{Name: up + "victim/dotdot", Body: "x"}}},
		{"absolute symlink parent", []image.TarEntry{
			{Name: "evil", Type: tar.TypeSymlink, Link: victim},
			{Name: "evil/abs-symlink", Body: "x"}}},
		{"relative symlink parent", []image.TarEntry{
			{Name: "evil", Type: tar.TypeSymlink, Link: up + "victim"},
			{Name: "evil/rel-symlink", Body: "x"}}},
		{"nested symlink parent", []image.TarEntry{
			{Name: "d/", Type: tar.TypeDir},
			{Name: "d/up", Type: tar.TypeSymlink, Link: "../" + up + "victim"},
			{Name: "d/up/nested", Body: "x"}}},
		{"hard link out", []image.TarEntry{{Name: "h", Type: tar.TypeLink, Link: up + "victim/target"}}},
		{"hard link through symlink", []image.TarEntry{
			{Name: "s", Type: tar.TypeSymlink, Link: victim},
			{Name: "h", Type: tar.TypeLink, Link: "s/target"}}},
		{"whiteout through symlink", []image.TarEntry{
			{Name: "s", Type: tar.TypeSymlink, Link: victim},
			{Name: "s/.wh.target"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(victim, "target"), []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, storeDir)
			img := image.MakeImage(t, v1.Config{}, image.MakeLayer(t, "", tc.entries...))
			_, err := s.Import(ctx, img, "example.com/evil:1")
			t.Logf("Import: %v", err)
			if !errors.Is(err, image.ErrInvalidLayer) {
				t.Errorf("Import = %v, want ErrInvalidLayer", err)
			}
			if got := readDirNames(t, victim); !slices.Equal(got, []string{"target"}) {
				t.Errorf("the layer wrote outside its directory: %v", got)
			}
			if b, err := os.ReadFile(filepath.Join(victim, "target")); err != nil || string(b) != "precious" {
				t.Errorf("victim/target = %q, %v", b, err)
			}
			if st := statT(t, filepath.Join(victim, "target")); st.Nlink != 1 {
				t.Errorf("victim/target has %d links", st.Nlink)
			}
			if err := s.GC(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Absolute entry names are taken relative to the layer root, as Docker does.
	s := openStore(t, storeDir)
	img := image.MakeImage(t, v1.Config{}, image.MakeLayer(t, "", image.TarEntry{Name: "/abs/file", Body: "x"}, image.TarEntry{Name: "./rel/file", Body: "y"}))
	if _, err := s.Import(ctx, img, "example.com/abs:1"); err != nil {
		t.Fatal(err)
	}
	dirs, _, err := s.Rootfs(ctx, "example.com/abs:1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"abs/file", "rel/file"} {
		if _, err := os.Stat(filepath.Join(dirs[0], p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestLoadFallsBackToDockerManifest: an archive whose index.json names nothing
// but whose manifest.json has RepoTags loads under those tags.
func TestLoadFallsBackToDockerManifest(t *testing.T) {
	one, _ := twoImages(t)
	var buf bytes.Buffer
	if err := image.WriteArchive(&buf, image.ArchiveImage{Image: one, Names: []string{"example.com/one:1"}}); err != nil {
		t.Fatal(err)
	}
	unnamed := mapTar(t, buf.Bytes(), func(n string, b []byte) []byte {
		if n == "index.json" {
			var idx v1.IndexManifest
			json.Unmarshal(b, &idx)
			for i := range idx.Manifests {
				idx.Manifests[i].Annotations = map[string]string{"org.opencontainers.image.ref.name": "1"}
			}
			b, _ = json.Marshal(idx)
		}
		return b
	})
	s := openStore(t, "")
	imgs, err := s.Load(context.Background(), bytes.NewReader(unnamed))
	if err != nil || !slices.Equal(names(imgs), []string{"example.com/one:1"}) {
		t.Fatalf("Load = %v, %v", names(imgs), err)
	}
}
