package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"
)

// Options configure a Store.
type Options struct {
	// Root is the store's directory, e.g. <data-dir>/images. Created if missing.
	Root string
	// Logger receives the store's log; nil discards it.
	Logger *slog.Logger
	// Registries redirects pulls (mirrors, rewrites, credentials, plain HTTP);
	// nil contacts every registry directly.
	Registries *RegistriesConfig
	// Platform is the "os/arch[/variant]" picked from multi-platform images;
	// empty means this machine's (linux/amd64 here).
	Platform string
	// Transport is the HTTP transport pulls use (tests use one that refuses
	// non-loopback addresses); nil is a clone of http.DefaultTransport.
	Transport http.RoundTripper
}

// Store is a content-addressed image store in one directory. It is safe for
// concurrent use by many goroutines and by several processes on the same
// directory (see the package documentation for the locking protocol).
type Store struct {
	root      string
	log       *slog.Logger
	resolver  *resolver
	platform  v1.Platform
	transport http.RoundTripper

	unpacks singleflight.Group
	parsed  sync.Map // v1.Hash -> *parsedImage (content-addressed, immutable)

	// beforeIndexRename, when set (by tests), runs after a new index file is
	// written and synced and before it replaces the old one.
	beforeIndexRename func()
}

// Image is a named image in the store.
type Image struct {
	// Name is the normalized reference, e.g. "docker.io/library/busybox:1.36".
	Name string
	// ID is the image ID: the digest of its config ("sha256:...").
	ID string
	// Digest is the digest of the stored (platform-specific) manifest.
	Digest string
	// RepoDigest is Name's repository at the digest the source served for it
	// (the index digest for multi-platform images), e.g.
	// "docker.io/library/busybox@sha256:...", as container statuses report imageID.
	RepoDigest string
	// Size is the size of the config and the (compressed) layers in bytes.
	Size int64
	// Stored is when Name was last loaded or pulled.
	Stored time.Time
}

// Index annotations of the store's index.json.
const (
	annotationRefName    = "org.opencontainers.image.ref.name"
	annotationImageName  = "io.containerd.image.name"
	annotationRepoDigest = "dev.peapod.image.repo-digest"
	annotationID         = "dev.peapod.image.id"
	annotationSize       = "dev.peapod.image.size"
	annotationStored     = "dev.peapod.image.stored"
)

// Open opens (creating if needed) the store rooted at opts.Root.
func Open(opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("image store: no root directory")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	res, err := compileRegistries(opts.Registries)
	if err != nil {
		return nil, err
	}
	plat := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if opts.Platform != "" {
		p, err := v1.ParsePlatform(opts.Platform)
		if err != nil {
			return nil, fmt.Errorf("image store: platform %q: %w", opts.Platform, err)
		}
		plat = *p
	}
	s := &Store{root: root, log: opts.Logger, resolver: res, platform: plat, transport: opts.Transport}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.transport == nil {
		s.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	for _, d := range []string{root, s.path("blobs", "sha256"), s.path("layers"), s.path("tmp"), s.path("holds")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := s.initLayout(); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return s, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.root}, elem...)...)
}

// List returns the named images, sorted by name.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		if img, ok := imageOf(d); ok {
			out = append(out, img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the image a reference (or image ID "sha256:...") names. It returns
// an error wrapping ErrNotFound when the store has none, and ErrInvalidReference
// when ref is not a reference.
func (s *Store) Get(ctx context.Context, ref string) (Image, error) {
	d, err := s.resolve(ref)
	if err != nil {
		return Image{}, err
	}
	img, _ := imageOf(d)
	return img, nil
}

// Rootfs returns the unpacked layer directories of the image ref names, top-most
// first as overlayfs' lowerdir option wants them, and its config. Layers missing
// on disk are unpacked again from their blobs. The directories are shared by every
// container of every image that has those layers and must be mounted read-only
// (as lowerdirs). A container should use Acquire instead, which also keeps the
// layers from being collected when the image is removed while the container
// exists. An image without layers has no lowerdirs.
func (s *Store) Rootfs(ctx context.Context, ref string) (lowerDirs []string, cfg ImageConfig, err error) {
	unlock, err := s.lockContent()
	if err != nil {
		return nil, ImageConfig{}, err
	}
	defer unlock()
	d, err := s.resolve(ref)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	return s.rootfsOf(ctx, d.Digest)
}

// Acquire is Rootfs plus a hold named holder (a container ID) on the image's
// content: until Release(holder), the layers and blobs stay on disk even if the
// image is removed. Holds are files in the store and survive restarts. Acquiring
// an existing holder again replaces its hold.
func (s *Store) Acquire(ctx context.Context, holder, ref string) (lowerDirs []string, cfg ImageConfig, err error) {
	if err := validHolder(holder); err != nil {
		return nil, ImageConfig{}, err
	}
	unlock, err := s.lockContent()
	if err != nil {
		return nil, ImageConfig{}, err
	}
	defer unlock()
	d, err := s.resolve(ref)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	dirs, cfg, err := s.rootfsOf(ctx, d.Digest)
	if err != nil {
		return nil, ImageConfig{}, err
	}
	data, err := json.Marshal(holdFile{Manifest: d.Digest.String(), Name: d.Annotations[annotationImageName]})
	if err != nil {
		return nil, ImageConfig{}, err
	}
	var old holdFile
	if b, err := os.ReadFile(s.path("holds", holder)); err == nil && json.Unmarshal(b, &old) == nil && old.Manifest != d.Digest.String() {
		s.markGC() // the replaced hold may have kept a removed image
	}
	if err := writeFileAtomic(s.path("holds"), holder, data, nil); err != nil {
		return nil, ImageConfig{}, fmt.Errorf("hold %s: %w", holder, err)
	}
	return dirs, cfg, nil
}

// Release drops holder's hold; content no image or hold references any more is
// collected. Releasing an unknown holder is not an error.
func (s *Store) Release(holder string) error {
	if err := validHolder(holder); err != nil {
		return err
	}
	var h holdFile
	data, err := os.ReadFile(s.path("holds", holder))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = os.Remove(s.path("holds", holder))
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("release %s: %w", holder, err)
	}
	if json.Unmarshal(data, &h) == nil && s.indexed(h.Manifest) {
		return nil // the image is still there: nothing to collect
	}
	s.markGC()
	s.tryGC()
	return nil
}

// indexed reports whether a name in the index points at manifest.
func (s *Store) indexed(manifest string) bool {
	idx, err := s.readIndex()
	if err != nil {
		return false
	}
	for _, d := range idx.Manifests {
		if d.Digest.String() == manifest {
			return true
		}
	}
	return false
}

// Holders lists the holders that currently hold content (see Acquire), so that
// a restarted agent can release the holds of containers that no longer exist.
func (s *Store) Holders() ([]string, error) {
	ents, err := os.ReadDir(s.path("holds"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

type holdFile struct {
	Manifest string `json:"manifest"`
	Name     string `json:"name,omitempty"`
}

func validHolder(h string) error {
	if h == "" || len(h) > 200 || strings.ContainsAny(h, "/\x00") || strings.HasPrefix(h, ".") {
		return fmt.Errorf("%w: %q", ErrInvalidHolder, h)
	}
	return nil
}

// Remove removes the name ref (or, for an image ID "sha256:...", every name of
// that image) and returns the names removed. Blobs and layers no remaining image
// or hold uses are deleted; while another load or pull is in progress, that
// happens when the last of them ends. It returns an error wrapping ErrNotFound
// when nothing matches.
func (s *Store) Remove(ctx context.Context, ref string) ([]string, error) {
	id, isID := parseImageID(ref)
	var r Reference
	if !isID {
		var err error
		if r, err = ParseReference(ref); err != nil {
			return nil, err
		}
	}
	var removed []string
	err := s.updateIndex(func(idx *v1.IndexManifest) (bool, error) {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			name := d.Annotations[annotationImageName]
			match := name == r.String()
			if isID {
				match = d.Annotations[annotationID] == id || d.Digest.String() == id
			}
			if match {
				removed = append(removed, name)
				continue
			}
			kept = append(kept, d)
		}
		idx.Manifests = kept
		return len(removed) > 0, nil
	})
	if err != nil {
		return nil, err
	}
	if len(removed) == 0 && !isID && r.Digest() != "" {
		// name@digest of an image stored by tag: remove the names it resolves to.
		if d, err := s.resolve(ref); err == nil {
			return s.Remove(ctx, d.Annotations[annotationImageName])
		}
	}
	if len(removed) == 0 {
		return nil, fmt.Errorf("remove %s: %w", ref, ErrNotFound)
	}
	s.log.Info("image removed", "names", removed)
	s.markGC()
	s.tryGC()
	return removed, nil
}

// resolve finds the index entry ref names: an exact name, an image ID, or a
// digest reference matching a stored manifest or repo digest of that repository.
func (s *Store) resolve(ref string) (v1.Descriptor, error) {
	idx, err := s.readIndex()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if id, ok := parseImageID(ref); ok {
		for _, d := range idx.Manifests {
			if d.Annotations[annotationID] == id || d.Digest.String() == id {
				return d, nil
			}
		}
		return v1.Descriptor{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	r, err := ParseReference(ref)
	if err != nil {
		return v1.Descriptor{}, err
	}
	for _, d := range idx.Manifests {
		if d.Annotations[annotationImageName] == r.String() {
			return d, nil
		}
	}
	if dg := r.Digest(); dg != "" {
		for _, d := range idx.Manifests {
			n, err := ParseReference(d.Annotations[annotationImageName])
			if err != nil || n.Name() != r.Name() {
				continue
			}
			if d.Digest.String() == dg || d.Annotations[annotationRepoDigest] == dg {
				return d, nil
			}
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s: %w", r, ErrNotFound)
}

// imageOf converts an index entry to an Image.
func imageOf(d v1.Descriptor) (Image, bool) {
	name := d.Annotations[annotationImageName]
	if name == "" {
		return Image{}, false
	}
	img := Image{Name: name, ID: d.Annotations[annotationID], Digest: d.Digest.String()}
	img.Size, _ = strconv.ParseInt(d.Annotations[annotationSize], 10, 64)
	img.Stored, _ = time.Parse(time.RFC3339Nano, d.Annotations[annotationStored])
	if rd := d.Annotations[annotationRepoDigest]; rd != "" {
		if r, err := ParseReference(name); err == nil {
			img.RepoDigest = r.Name() + "@" + rd
		}
	}
	return img, true
}

// RootfsProvider is the part of the store a container runtime needs; *Store
// implements it.
type RootfsProvider interface {
	// Acquire returns the lowerdirs (top-most first) and config of ref's image and
	// keeps them on disk until Release(holder).
	Acquire(ctx context.Context, holder, ref string) (lowerDirs []string, cfg ImageConfig, err error)
	// Release drops the hold taken by Acquire.
	Release(holder string) error
}
