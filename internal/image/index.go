package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Lock files. Both are taken with flock(2) on a descriptor opened for that one
// operation, so they exclude goroutines of one process as well as processes.
const (
	// indexLock is held exclusively around every read-modify-write of index.json.
	indexLock = "index.lock"
	// contentLock is held shared by every operation that writes or uses content
	// not yet (or not necessarily) referenced by the index (load, pull, unpack,
	// acquire), and exclusively by garbage collection.
	contentLock = "content.lock"
	// gcPending exists while collection is owed (after a remove or release).
	gcPending = "gc-pending"
)

// initLayout writes oci-layout and an empty index.json when they are missing.
func (s *Store) initLayout() error {
	_, errLayout := os.Stat(s.path("oci-layout"))
	_, errIndex := os.Stat(s.path("index.json"))
	if errLayout == nil && errIndex == nil {
		return nil
	}
	return s.updateIndex(func(*v1.IndexManifest) (bool, error) {
		if _, err := os.Stat(s.path("oci-layout")); errors.Is(err, fs.ErrNotExist) {
			if err := writeFileAtomic(s.root, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`), nil); err != nil {
				return false, err
			}
		}
		_, err := os.Stat(s.path("index.json"))
		return errors.Is(err, fs.ErrNotExist), nil
	})
}

// flock opens the lock file name and locks it (unix.LOCK_SH or LOCK_EX, maybe
// with LOCK_NB); the returned func unlocks it.
func (s *Store) flock(name string, how int) (func(), error) {
	f, err := os.OpenFile(s.path(name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store lock: %w", err)
	}
	fd := int(f.Fd())
	for {
		err = unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("image store lock %s: %w", name, err)
	}
	return func() {
		_ = unix.Flock(fd, unix.LOCK_UN)
		f.Close()
	}, nil
}

// lockContent takes the content lock shared; the returned func releases it and,
// when collection is owed, tries to collect.
func (s *Store) lockContent() (func(), error) {
	unlock, err := s.flock(contentLock, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	return func() {
		unlock()
		s.tryGC()
	}, nil
}

// readIndex reads index.json; a missing file is an empty index.
func (s *Store) readIndex() (*v1.IndexManifest, error) {
	data, err := os.ReadFile(s.path("index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: image index %s: %v", ErrCorrupt, s.path("index.json"), err)
	}
	return idx, nil
}

// updateIndex runs fn on the index under the index lock and writes the result
// (when fn says it changed) atomically: a temporary file, fsync, rename, fsync of
// the directory. A crash leaves either the old or the new index, never a mix.
func (s *Store) updateIndex(fn func(*v1.IndexManifest) (bool, error)) error {
	unlock, err := s.flock(indexLock, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	changed, err := fn(idx)
	if err != nil || !changed {
		return err
	}
	idx.SchemaVersion = 2
	idx.MediaType = types.OCIImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.root, "index.json", append(data, '\n'), s.beforeIndexRename); err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data: a temporary file in dir, fsync,
// rename over name, fsync of dir. beforeRename (tests) runs just before the rename.
func writeFileAtomic(dir, name string, data []byte, beforeRename func()) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if beforeRename != nil {
		beforeRename()
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// markGC records that collection is owed.
func (s *Store) markGC() {
	if f, err := os.OpenFile(s.path(gcPending), os.O_WRONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
}

// tryGC collects when collection is owed and no other operation holds the content
// lock; otherwise the last of those operations does it when it ends.
func (s *Store) tryGC() {
	if _, err := os.Stat(s.path(gcPending)); err != nil {
		return
	}
	unlock, err := s.flock(contentLock, unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		return
	}
	defer unlock()
	if err := s.collect(); err != nil {
		s.log.Warn("image garbage collection failed", "err", err)
	}
}

// GC deletes every blob, unpacked layer and temporary file that no named image and
// no hold references. It waits for loads and pulls in progress (in any process)
// to end. Remove and Release collect by themselves; GC is for tools and tests.
func (s *Store) GC(ctx context.Context) error {
	unlock, err := s.flock(contentLock, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	return s.collect()
}

// collect runs with the content lock held exclusively: nothing is being written
// that the index does not reference yet, so everything unreferenced is garbage.
func (s *Store) collect() error {
	if err := os.Remove(s.path(gcPending)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	idx, err := s.readIndex()
	if err != nil {
		return err // never collect against an index we cannot read
	}
	manifests := map[v1.Hash]bool{}
	for _, d := range idx.Manifests {
		manifests[d.Digest] = true
	}
	holds, err := os.ReadDir(s.path("holds"))
	if err != nil {
		return err
	}
	for _, e := range holds {
		p := s.path("holds", e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			os.Remove(p) // an interrupted atomic write
			continue
		}
		var h holdFile
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &h); err != nil {
			return fmt.Errorf("%w: hold %s: %v", ErrCorrupt, e.Name(), err)
		}
		d, err := v1.NewHash(h.Manifest)
		if err != nil {
			return fmt.Errorf("%w: hold %s: %v", ErrCorrupt, e.Name(), err)
		}
		manifests[d] = true
	}
	liveBlobs := map[string]bool{}
	liveLayers := map[string]bool{}
	for m := range manifests {
		liveBlobs[m.Hex] = true
		p, err := s.parseImage(m)
		if err != nil {
			// Keep whatever this manifest might reference rather than guess.
			return fmt.Errorf("collect: manifest %s: %w", m, err)
		}
		liveBlobs[p.manifest.Config.Digest.Hex] = true
		for i, l := range p.manifest.Layers {
			liveBlobs[l.Digest.Hex] = true
			liveLayers[p.config.RootFS.DiffIDs[i].Hex] = true
		}
	}
	var blobs, layers int
	ents, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !liveBlobs[e.Name()] {
			if err := os.Remove(s.path("blobs", "sha256", e.Name())); err != nil {
				return err
			}
			s.parsed.Delete(v1.Hash{Algorithm: "sha256", Hex: e.Name()})
			blobs++
		}
	}
	ents, err = os.ReadDir(s.path("layers"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if liveLayers[e.Name()] {
			continue
		}
		// Move it out first: a crash half-way through deleting must not leave a
		// partial directory where a complete layer is expected.
		trash := s.path("tmp", "trash-"+e.Name())
		if err := os.Rename(s.path("layers", e.Name()), trash); err != nil {
			return err
		}
		layers++
	}
	ents, err = os.ReadDir(s.path("tmp"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(s.path("tmp", e.Name())); err != nil {
			return err
		}
	}
	// Temporary files of interrupted atomic writes in the root are written under
	// the index lock (Remove and Release write the index without the content lock).
	unlock, err := s.flock(indexLock, unix.LOCK_EX)
	if err != nil {
		return err
	}
	stale, _ := filepath.Glob(s.path(".*.tmp-*"))
	for _, p := range stale {
		os.Remove(p)
	}
	unlock()
	if blobs+layers > 0 {
		s.log.Info("image garbage collected", "blobs", blobs, "layers", layers)
	}
	return nil
}
