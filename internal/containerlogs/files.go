package containerlogs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	// timestampFormat is upstream's suffix of rotated logs (local time).
	timestampFormat = "20060102-150405"
	compressSuffix  = ".gz"
	tmpSuffix       = ".tmp"
)

// rotatedSuffix matches what rotation leaves after "LOG.": a timestamp,
// maybe compressed, maybe a temporary file of a compression.
var rotatedSuffix = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}(\.gz)?(\.tmp)?$`)

// rotatedFiles lists the files rotation made from log: LOG.TIMESTAMP,
// LOG.TIMESTAMP.gz and temporary files of compressions.
func rotatedFiles(log string) ([]string, error) {
	dir, base := filepath.Split(log)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if ok && e.Type().IsRegular() && rotatedSuffix.MatchString(rest) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out) // oldest first: the timestamps are fixed-width
	return out, nil
}

// tidyRotated prepares log's rotated files for one more (upstream's
// rotateLog before rotateLatestLog): it removes leftovers of interrupted
// compressions, then the oldest files so that at most maxFiles-2 remain,
// then compresses those not compressed yet.
func (m *Manager) tidyRotated(log string) error {
	files, err := rotatedFiles(log)
	if err != nil {
		return err
	}
	var inUse []string
	for _, f := range files {
		switch {
		case strings.HasSuffix(f, tmpSuffix),
			!strings.HasSuffix(f, compressSuffix) && slices.Contains(files, f+compressSuffix):
			// A compression that did not finish, or one that finished but
			// did not remove its original.
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		default:
			inUse = append(inUse, f)
		}
	}
	keep := max(m.maxFiles-2, 0)
	for len(inUse) > keep {
		if err := os.Remove(inUse[0]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		m.log.Debug("removed an old rotated log", "path", inUse[0])
		inUse = inUse[1:]
	}
	for _, f := range inUse {
		if strings.HasSuffix(f, compressSuffix) {
			continue
		}
		if err := compress(f); err != nil {
			return err
		}
	}
	return nil
}

// compress replaces log by log.gz: written to a temporary file, synced and
// renamed into place before the original is removed.
func compress(log string) (err error) {
	src, err := os.Open(log)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	tmp := log + compressSuffix + tmpSuffix
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			dst.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(dst)
	if _, err := io.Copy(zw, src); err != nil {
		return fmt.Errorf("compressing %s: %w", log, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing %s: %w", log, err)
	}
	if err := dst.Sync(); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, log+compressSuffix); err != nil {
		return err
	}
	return os.Remove(log)
}

// renameNoReplace renames from to to unless to exists.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: check, then rename.
		if _, serr := os.Lstat(to); serr == nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
		}
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}
