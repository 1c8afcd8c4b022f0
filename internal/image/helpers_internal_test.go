package image

// Test helpers shared with the external tests (package image_test): exported
// here, in a _test.go file, they exist only in the test binary.

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TarEntry is one entry of a test layer. Type defaults to a regular file with
// Body; Mode to 0644 (files) or 0755 (directories).
type TarEntry struct {
	Name   string
	Type   byte
	Body   string
	Link   string
	Mode   int64
	UID    int
	GID    int
	Xattrs map[string]string
	Major  int64
	Minor  int64
}

// EntryTime is the modification time of every test entry.
func EntryTime() time.Time { return time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC) }

// LayerTar returns the tar bytes of entries, in order.
func LayerTar(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Linkname: e.Link, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: EntryTime(), Devmajor: e.Major, Devminor: e.Minor}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if len(e.Xattrs) > 0 {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{}
			for k, v := range e.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// MakeLayer makes a layer of entries, compressed with "gzip", "zstd" or not ("").
func MakeLayer(t testing.TB, compress string, entries ...TarEntry) v1.Layer {
	t.Helper()
	return LayerFromTar(t, compress, LayerTar(t, entries...))
}

// LayerFromTar makes a layer of tar bytes, compressed with "gzip", "zstd" or not.
func LayerFromTar(t testing.TB, compress string, b []byte) v1.Layer {
	t.Helper()
	if compress == "" {
		return static.NewLayer(b, types.OCIUncompressedLayer)
	}
	opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	opts := []tarball.LayerOption{tarball.WithCompression(compression.GZip), tarball.WithMediaType(types.OCILayer)}
	if compress == "zstd" {
		opts = []tarball.LayerOption{tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd)}
	}
	l, err := tarball.LayerFromOpener(opener, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// MakeImage makes a linux image of this machine's architecture with cfg and
// layers (bottom first), with OCI media types.
func MakeImage(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	return MakePlatformImage(t, runtime.GOARCH, cfg, layers...)
}

// MakePlatformImage is MakeImage for another architecture.
func MakePlatformImage(t testing.TB, arch string, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS: "linux", Architecture: arch, Created: v1.Time{Time: EntryTime()}, Config: cfg,
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range layers {
		if img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{Created: v1.Time{Time: EntryTime()}}}); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// WriteArchiveFile writes images into an archive file and returns its path.
func WriteArchiveFile(t testing.TB, path string, images ...ArchiveImage) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WriteArchive(f, images...); err != nil {
		t.Fatal(err)
	}
	return path
}

// SetBeforeIndexRename installs a hook run just before index.json is replaced.
func (s *Store) SetBeforeIndexRename(f func()) { s.beforeIndexRename = f }
