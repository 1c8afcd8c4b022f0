package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Load reads an image archive from r and stores every named image in it, with
// its layers unpacked, and returns them. It reads, plain or gzip- or
// zstd-compressed:
//
//   - OCI image layout archives (oci-layout, index.json, blobs/sha256/...), with
//     names in each index.json entry's io.containerd.image.name annotation or, when
//     that is absent and it holds a full reference, org.opencontainers.image.ref.name
//     (what `docker save` since Docker 25, containerd, skopeo, buildah and
//     WriteArchive write). An entry that is an image index resolves to the store's
//     platform.
//   - `docker save` tarballs: manifest.json with Config, RepoTags and Layers (as
//     <id>/layer.tar, <digest>.tar.gz or blobs/sha256/<digest>, maybe symbolic
//     links to one another).
//
// Blobs are verified against their digests and layers against the diff IDs in
// the config. Images without a name are skipped. Errors wrap ErrInvalidArchive
// when the archive is malformed, lacks a blob or has no named image, and
// ErrCorrupt when content does not match its digest.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]Image, error) {
	unlock, err := s.lockContent()
	if err != nil {
		return nil, err
	}
	defer unlock()
	tmp, err := os.MkdirTemp(s.path("tmp"), "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	a, err := s.readArchive(ctx, r, tmp)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var images []Image
	if a.meta["index.json"] == nil && a.meta["manifest.json"] == nil {
		err = fmt.Errorf("%w: neither index.json nor manifest.json", ErrInvalidArchive)
	}
	if a.meta["index.json"] != nil {
		images, err = s.loadOCI(ctx, a)
	}
	if err == nil && len(images) == 0 && a.meta["manifest.json"] != nil {
		// No named image in index.json: the docker manifest may have RepoTags.
		images, err = s.loadDocker(ctx, a)
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("load: %w: no named image", ErrInvalidArchive)
	}
	return images, nil
}

// archive is what readArchive found in an archive.
type archive struct {
	meta  map[string][]byte  // small .json files, oci-layout, repositories
	files map[string]string  // other regular files, spooled: name -> path
	blobs map[string]v1.Hash // blobs/sha256/<hex> entries, stored in the store
	links map[string]string  // symbolic and hard links: name -> target name
}

// readArchive reads the tar stream once: OCI blobs go straight into the blob
// store (verified), small metadata into memory, anything else into files in tmp.
func (s *Store) readArchive(ctx context.Context, r io.Reader, tmp string) (*archive, error) {
	dr, closeDR, err := decompress(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidArchive, err)
	}
	defer closeDR()
	a := &archive{meta: map[string][]byte{}, files: map[string]string{}, blobs: map[string]v1.Hash{}, links: map[string]string{}}
	tr := tar.NewReader(dr)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, fmt.Errorf("%w: empty", ErrInvalidArchive)
			}
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidArchive, err)
		}
		name, err := archiveName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			target := hdr.Linkname
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target)
			}
			if a.links[name], err = archiveName(target); err != nil {
				return nil, err
			}
		case tar.TypeLink:
			if a.links[name], err = archiveName(hdr.Linkname); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if err := s.archiveFile(ctx, a, name, hdr.Size, tr, tmp); err != nil {
				return nil, err
			}
		}
	}
}

func archiveName(name string) (string, error) {
	c := path.Clean(strings.TrimLeft(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: entry %q escapes the archive", ErrInvalidArchive, name)
	}
	return c, nil
}

func (s *Store) archiveFile(ctx context.Context, a *archive, name string, size int64, r io.Reader, tmp string) error {
	if hx, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && isSHA256Hex(hx) {
		h := v1.Hash{Algorithm: "sha256", Hex: hx}
		a.blobs[name] = h
		if s.hasBlob(h) {
			return nil // tar.Reader skips the rest of the entry
		}
		if err := s.putBlob(ctx, h, r, size); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if size <= maxMetadataSize && (strings.HasSuffix(name, ".json") || name == "oci-layout" || name == "repositories") {
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalidArchive, name, err)
		}
		a.meta[name] = b
		return nil
	}
	f, err := os.CreateTemp(tmp, "file-")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, ctxReader{ctx, r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	a.files[name] = f.Name()
	return nil
}

// follow resolves links (a few hops at most).
func (a *archive) follow(name string) string {
	for i := 0; i < 16; i++ {
		t, ok := a.links[name]
		if !ok {
			break
		}
		name = t
	}
	return name
}

func (s *Store) loadOCI(ctx context.Context, a *archive) ([]Image, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(a.meta["index.json"]))
	if err != nil {
		return nil, fmt.Errorf("%w: index.json: %v", ErrInvalidArchive, err)
	}
	var images []Image
	for _, d := range idx.Manifests {
		names := annotatedNames(d.Annotations)
		if len(names) == 0 {
			s.log.Warn("image in archive has no name: skipped", "digest", d.Digest)
			continue
		}
		manifest := d.Digest
		switch d.MediaType {
		case types.OCIImageIndex, types.DockerManifestList:
			raw, err := s.readBlob(d.Digest)
			if err != nil {
				return nil, fmt.Errorf("%w: index %s: %v", ErrInvalidArchive, d.Digest, err)
			}
			sub, err := v1.ParseIndexManifest(bytes.NewReader(raw))
			if err != nil {
				return nil, fmt.Errorf("%w: index %s: %v", ErrInvalidArchive, d.Digest, err)
			}
			sel, err := selectPlatform(sub.Manifests, s.platform)
			if err != nil {
				return nil, fmt.Errorf("%v: %w", names[0], err)
			}
			manifest = sel.Digest
		case types.OCIManifestSchema1, types.DockerManifestSchema2:
		default:
			s.log.Warn("archive entry is not an image: skipped", "mediaType", d.MediaType, "digest", d.Digest)
			continue
		}
		if err := s.checkComplete(manifest); err != nil {
			return nil, err
		}
		imgs, err := s.commit(ctx, manifest, names, d.Digest)
		if err != nil {
			return nil, err
		}
		images = append(images, imgs...)
	}
	return images, nil
}

// annotatedNames reads an index.json entry's name: io.containerd.image.name, or
// org.opencontainers.image.ref.name when it is a full reference rather than a
// bare tag ("1.36" names nothing on its own).
func annotatedNames(ann map[string]string) []Reference {
	for _, n := range []string{ann[annotationImageName], ann[annotationRefName]} {
		if n == "" || !strings.ContainsAny(n, "/:@") {
			continue
		}
		if r, err := ParseReference(n); err == nil {
			return []Reference{r}
		}
	}
	return nil
}

// checkComplete checks that a manifest, its config and its layers are stored.
func (s *Store) checkComplete(manifest v1.Hash) error {
	p, err := s.parseImage(manifest)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %v (missing from the archive)", ErrInvalidArchive, err)
	}
	if err != nil {
		return err
	}
	for _, l := range p.manifest.Layers {
		if !s.hasBlob(l.Digest) {
			return fmt.Errorf("%w: layer %s of %s is missing from the archive", ErrInvalidArchive, l.Digest, manifest)
		}
	}
	return nil
}

// dockerManifest is one entry of a `docker save` manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (s *Store) loadDocker(ctx context.Context, a *archive) ([]Image, error) {
	var entries []dockerManifest
	if err := json.Unmarshal(a.meta["manifest.json"], &entries); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrInvalidArchive, err)
	}
	var images []Image
	for _, e := range entries {
		var names []Reference
		for _, t := range e.RepoTags {
			r, err := ParseReference(t)
			if err != nil {
				return nil, fmt.Errorf("%w: manifest.json: %w", ErrInvalidArchive, err)
			}
			names = append(names, r)
		}
		if len(names) == 0 {
			s.log.Warn("image in archive has no RepoTags: skipped", "config", e.Config)
			continue
		}
		cfg, err := s.archiveBytes(a, e.Config)
		if err != nil {
			return nil, err
		}
		cfgDigest, err := s.putBlobBytes(ctx, cfg)
		if err != nil {
			return nil, err
		}
		m := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfg)), Digest: cfgDigest},
			Layers:        []v1.Descriptor{},
		}
		for _, l := range e.Layers {
			d, err := s.archiveLayer(a, l)
			if err != nil {
				return nil, err
			}
			m.Layers = append(m.Layers, d)
		}
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		digest, err := s.putBlobBytes(ctx, raw)
		if err != nil {
			return nil, err
		}
		imgs, err := s.commit(ctx, digest, names, digest)
		if err != nil {
			return nil, err
		}
		images = append(images, imgs...)
	}
	return images, nil
}

// archiveBytes returns a small file of the archive (a docker config).
func (s *Store) archiveBytes(a *archive, name string) ([]byte, error) {
	n, err := archiveName(name)
	if err != nil {
		return nil, err
	}
	n = a.follow(n)
	if b, ok := a.meta[n]; ok {
		return b, nil
	}
	if h, ok := a.blobs[n]; ok {
		return s.readBlob(h)
	}
	if p, ok := a.files[n]; ok {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		b, err := readMetadata(f)
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("%w: %s %v", ErrInvalidArchive, name, err)
		}
		return b, err
	}
	return nil, fmt.Errorf("%w: %s is missing", ErrInvalidArchive, name)
}

// archiveLayer stores a docker-save layer file as a blob (moving the spooled
// file) and describes it, with a media type from its compression.
func (s *Store) archiveLayer(a *archive, name string) (v1.Descriptor, error) {
	n, err := archiveName(name)
	if err != nil {
		return v1.Descriptor{}, err
	}
	n = a.follow(n)
	h, ok := a.blobs[n]
	if !ok {
		p, ok := a.files[n]
		if !ok {
			return v1.Descriptor{}, fmt.Errorf("%w: layer %s is missing", ErrInvalidArchive, name)
		}
		if h, _, err = s.putBlobFile(p); err != nil {
			return v1.Descriptor{}, err
		}
		delete(a.files, n)
		a.blobs[n] = h
	}
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return v1.Descriptor{}, err
	}
	magic := make([]byte, 4)
	_, _ = io.ReadFull(f, magic)
	mt := types.OCIUncompressedLayer
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		mt = types.OCILayer
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		mt = types.OCILayerZStd
	}
	return v1.Descriptor{MediaType: mt, Size: fi.Size(), Digest: h}, nil
}

// LoadFile is Load of the archive at path.
func (s *Store) LoadFile(ctx context.Context, path string) ([]Image, error) {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	return s.Load(ctx, f)
}
