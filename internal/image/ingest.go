package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Import stores img (any go-containerregistry image: built with mutate, read
// from a layout, fetched by remote) under names, unpacks its layers and returns
// the stored images.
func (s *Store) Import(ctx context.Context, img v1.Image, names ...string) ([]Image, error) {
	refs, err := parseNames(names)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockContent()
	if err != nil {
		return nil, err
	}
	defer unlock()
	digest, err := s.writeImage(ctx, img)
	if err != nil {
		return nil, err
	}
	return s.commit(ctx, digest, refs, digest)
}

func parseNames(names []string) ([]Reference, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no name", ErrInvalidReference)
	}
	refs := make([]Reference, 0, len(names))
	for _, n := range names {
		r, err := ParseReference(n)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// writeImage writes img's blobs (those not yet stored) and returns its manifest
// digest. The caller holds the content lock.
func (s *Store) writeImage(ctx context.Context, img v1.Image) (v1.Hash, error) {
	mt, err := img.MediaType()
	if err != nil {
		return v1.Hash{}, err
	}
	if mt != types.OCIManifestSchema1 && mt != types.DockerManifestSchema2 {
		return v1.Hash{}, fmt.Errorf("%w: manifest media type %s", ErrUnsupported, mt)
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, ld := range m.Layers {
		if err := checkHash(ld.Digest); err != nil {
			return v1.Hash{}, err
		}
		if s.hasBlob(ld.Digest) {
			continue
		}
		l, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		err = s.putBlob(ctx, ld.Digest, rc, ld.Size)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
		s.log.Debug("image layer stored", "digest", ld.Digest, "size", ld.Size)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	if d, err := s.putBlobBytes(ctx, cfg); err != nil {
		return v1.Hash{}, err
	} else if d != m.Config.Digest {
		return v1.Hash{}, fmt.Errorf("%w: config has digest %s, manifest says %s", ErrCorrupt, d, m.Config.Digest)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	return s.putBlobBytes(ctx, raw)
}

// commit makes names point at the stored manifest (after unpacking its layers)
// and returns the resulting images. repoDigest is what the source served for the
// names (an index or the manifest itself). The caller holds the content lock.
func (s *Store) commit(ctx context.Context, manifest v1.Hash, names []Reference, repoDigest v1.Hash) ([]Image, error) {
	p, err := s.parseImage(manifest)
	if err != nil {
		return nil, err
	}
	if osName := p.config.OS; osName != "" && osName != s.platform.OS {
		return nil, fmt.Errorf("%w: image %s is for %s, not %s", ErrNoMatchingPlatform, manifest, osName, s.platform.OS)
	}
	if a := p.config.Architecture; a != "" && a != s.platform.Architecture {
		s.log.Warn("image is for another architecture", "names", names, "architecture", a, "want", s.platform.Architecture)
	}
	if _, err := s.layerDirs(ctx, p); err != nil {
		return nil, err
	}
	size := p.manifest.Config.Size
	for _, l := range p.manifest.Layers {
		size += l.Size
	}
	mt := p.manifest.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var images []Image
	err = s.updateIndex(func(idx *v1.IndexManifest) (bool, error) {
		for _, r := range names {
			d := v1.Descriptor{
				MediaType: mt,
				Size:      int64(len(p.rawManifest)),
				Digest:    manifest,
				Annotations: map[string]string{
					annotationImageName:  r.String(),
					annotationRefName:    r.String(),
					annotationRepoDigest: repoDigest.String(),
					annotationID:         p.manifest.Config.Digest.String(),
					annotationSize:       strconv.FormatInt(size, 10),
					annotationStored:     now,
				},
			}
			replaced := false
			for i := range idx.Manifests {
				if idx.Manifests[i].Annotations[annotationImageName] == r.String() {
					if idx.Manifests[i].Digest != manifest {
						s.markGC() // the old image may now be unreferenced
					}
					idx.Manifests[i] = d
					replaced = true
				}
			}
			if !replaced {
				idx.Manifests = append(idx.Manifests, d)
			}
			img, _ := imageOf(d)
			images = append(images, img)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	for _, img := range images {
		s.log.Info("image stored", "name", img.Name, "id", img.ID, "digest", img.Digest)
	}
	return images, nil
}

// rootfsOf returns the lowerdirs (top-most first) and config of a stored manifest.
func (s *Store) rootfsOf(ctx context.Context, manifest v1.Hash) ([]string, ImageConfig, error) {
	p, err := s.parseImage(manifest)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	dirs, err := s.layerDirs(ctx, p)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	return dirs, configOf(p.config), nil
}

// layerDirs unpacks (when needed) every layer of p and returns their directories,
// top-most first, down to the first layer whose root is opaque. A layer that occurs twice is listed once, at its top-most
// position (applying it again on top shadows everything the lower copy added),
// because overlayfs refuses a lowerdir given twice.
func (s *Store) layerDirs(ctx context.Context, p *parsedImage) ([]string, error) {
	n := len(p.manifest.Layers)
	dirs := make([]string, 0, n)
	seen := map[v1.Hash]bool{}
	for i := n - 1; i >= 0; i-- {
		diffID := p.config.RootFS.DiffIDs[i]
		dir, err := s.ensureLayer(ctx, diffID, p.manifest.Layers[i].Digest)
		if err != nil {
			return nil, err
		}
		if !seen[diffID] {
			seen[diffID] = true
			dirs = append(dirs, dir)
		}
		if opaqueRoot(dir) {
			// overlayfs ignores trusted.overlay.opaque on a layer's root, so a
			// layer that makes "/" opaque simply ends the list: nothing below it
			// is visible.
			break
		}
	}
	return dirs, nil
}

func opaqueRoot(dir string) bool {
	buf := make([]byte, 1)
	n, err := unix.Getxattr(dir, overlayOpaque, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// layerDir is where the layer with this diff ID is unpacked. Layers are keyed by
// diff ID rather than chain ID: with overlay-style whiteouts an unpacked layer
// does not depend on the layers below it, so images share more.
func (s *Store) layerDir(diffID v1.Hash) string { return s.path("layers", diffID.Hex) }

// ensureLayer unpacks blob (the layer with uncompressed digest diffID) unless it
// is unpacked already, once even when many goroutines ask at the same time. It
// unpacks into a temporary directory, verifies the diff ID, syncs the file system
// and renames the directory into place, so a directory under layers/ is always
// complete. Another process unpacking the same layer at the same time loses the
// rename race harmlessly. The caller holds the content lock.
func (s *Store) ensureLayer(ctx context.Context, diffID, blob v1.Hash) (string, error) {
	dir := s.layerDir(diffID)
	if _, err := os.Lstat(dir); err == nil {
		return dir, nil
	}
	_, err, _ := s.unpacks.Do(diffID.Hex, func() (any, error) {
		if _, err := os.Lstat(dir); err == nil {
			return nil, nil
		}
		return nil, s.unpack(ctx, diffID, blob, dir)
	})
	if err != nil {
		return "", err
	}
	return dir, nil
}

func (s *Store) unpack(ctx context.Context, diffID, blob v1.Hash, dir string) error {
	start := time.Now()
	f, err := os.Open(s.blobPath(blob))
	if err != nil {
		return fmt.Errorf("layer %s: %w", blob, err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp(s.path("tmp"), "layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	got, err := unpackLayer(ctx, tmp, f)
	if err != nil {
		return fmt.Errorf("layer %s: %w", blob, err)
	}
	if got != diffID {
		return fmt.Errorf("%w: layer %s unpacks to diff ID %s, config says %s", ErrCorrupt, blob, got, diffID)
	}
	// Make the unpacked files durable before the rename publishes them.
	if err := syncFS(tmp); err != nil {
		return err
	}
	if err := renameNoReplace(tmp, dir); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil // another process unpacked it first
		}
		return err
	}
	s.log.Debug("image layer unpacked", "diffID", diffID, "took", time.Since(start))
	return syncDir(s.path("layers"))
}

// renameNoReplace renames a directory into place unless the target exists (even
// as an empty directory, which rename(2) would replace).
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return os.Rename(from, to) // a file system without RENAME_NOREPLACE
	}
	return err
}

func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// selectPlatform picks the manifest for platform from an index's descriptors.
func selectPlatform(ms []v1.Descriptor, platform v1.Platform) (v1.Descriptor, error) {
	var unplatformed []v1.Descriptor
	for _, d := range ms {
		if d.MediaType != "" && d.MediaType != types.OCIManifestSchema1 && d.MediaType != types.DockerManifestSchema2 {
			continue
		}
		if d.Platform == nil {
			unplatformed = append(unplatformed, d)
			continue
		}
		if platformMatches(*d.Platform, platform) {
			return d, nil
		}
	}
	if len(unplatformed) == 1 && len(ms) == 1 {
		return unplatformed[0], nil
	}
	return v1.Descriptor{}, fmt.Errorf("%w: none of %d manifests is for %s", ErrNoMatchingPlatform, len(ms), platform.String())
}

func platformMatches(have, want v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	if want.Variant == "" || have.Variant == "" {
		return true
	}
	return have.Variant == want.Variant
}
