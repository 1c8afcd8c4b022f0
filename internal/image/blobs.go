package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxMetadataSize bounds manifests, configs and archive metadata files read into
// memory.
const maxMetadataSize = 16 << 20

func (s *Store) blobPath(h v1.Hash) string { return s.path("blobs", "sha256", h.Hex) }

func checkHash(h v1.Hash) error {
	if h.Algorithm != "sha256" || !isSHA256Hex(h.Hex) {
		return fmt.Errorf("%w: digest %q (only sha256)", ErrUnsupported, h.String())
	}
	return nil
}

func (s *Store) hasBlob(h v1.Hash) bool {
	if checkHash(h) != nil {
		return false
	}
	_, err := os.Stat(s.blobPath(h))
	return err == nil
}

// putBlob stores r's content as blob want, verifying its digest (and its size
// when size >= 0). It returns an error wrapping ErrCorrupt on a mismatch.
func (s *Store) putBlob(ctx context.Context, want v1.Hash, r io.Reader, size int64) error {
	if err := checkHash(want); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.path("tmp"), "blob-")
	if err != nil {
		return err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("blob %s: %w", want, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("%w: blob %s has digest sha256:%s", ErrCorrupt, want, got)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: blob %s has %d bytes, want %d", ErrCorrupt, want, n, size)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), s.blobPath(want)); err != nil {
		return err
	}
	return syncDir(s.path("blobs", "sha256"))
}

// putBlobBytes stores b and returns its digest.
func (s *Store) putBlobBytes(ctx context.Context, b []byte) (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return v1.Hash{}, err
	}
	if s.hasBlob(h) {
		return h, nil
	}
	return h, s.putBlob(ctx, h, bytes.NewReader(b), int64(len(b)))
}

// putBlobFile moves the file at path (inside the store's tmp directory) into the
// blob store and returns its digest and size.
func (s *Store) putBlobFile(path string) (v1.Hash, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	defer f.Close()
	h, n, err := v1.SHA256(f)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	if s.hasBlob(h) {
		return h, n, os.Remove(path)
	}
	if err := f.Sync(); err != nil {
		return v1.Hash{}, 0, err
	}
	if err := os.Rename(path, s.blobPath(h)); err != nil {
		return v1.Hash{}, 0, err
	}
	return h, n, syncDir(s.path("blobs", "sha256"))
}

// readBlob reads a small blob (manifest, config) and verifies its digest.
// errTooLarge is returned by readMetadata for input over maxMetadataSize.
var errTooLarge = fmt.Errorf("is larger than %d bytes", maxMetadataSize)

// readMetadata reads a manifest, index or config: at most maxMetadataSize
// bytes, errTooLarge beyond.
func readMetadata(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxMetadataSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetadataSize {
		return nil, errTooLarge
	}
	return b, nil
}

func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	if err := checkHash(h); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", h, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := readMetadata(f)
	if errors.Is(err, errTooLarge) {
		return nil, fmt.Errorf("%w: blob %s %v", ErrUnsupported, h, err)
	}
	if err != nil {
		return nil, err
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != h.Hex {
		return nil, fmt.Errorf("%w: blob %s", ErrCorrupt, h)
	}
	return b, nil
}

// parsedImage is a stored manifest and its config.
type parsedImage struct {
	manifest    *v1.Manifest
	rawManifest []byte
	config      *v1.ConfigFile
}

// parseImage reads and checks a stored image manifest and its config.
func (s *Store) parseImage(manifest v1.Hash) (*parsedImage, error) {
	if p, ok := s.parsed.Load(manifest); ok {
		return p.(*parsedImage), nil
	}
	raw, err := s.readBlob(manifest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, manifest, err)
	}
	switch m.MediaType {
	case types.OCIManifestSchema1, types.DockerManifestSchema2, "":
	default:
		return nil, fmt.Errorf("%w: manifest %s has media type %s", ErrUnsupported, manifest, m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: manifest %s has schema version %d", ErrUnsupported, manifest, m.SchemaVersion)
	}
	rawCfg, err := s.readBlob(m.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", manifest, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("%w: config %s: %v", ErrCorrupt, m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%w: manifest %s has %d layers, its config %d diff IDs", ErrCorrupt, manifest, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range m.Layers {
		if err := checkHash(l.Digest); err != nil {
			return nil, err
		}
		if err := checkHash(cfg.RootFS.DiffIDs[i]); err != nil {
			return nil, err
		}
	}
	p := &parsedImage{manifest: m, rawManifest: raw, config: cfg}
	s.parsed.Store(manifest, p)
	return p, nil
}

// ctxReader stops reading when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
