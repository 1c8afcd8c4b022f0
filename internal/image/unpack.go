package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Overlayfs' on-disk forms of OCI whiteouts.
const (
	whiteoutPrefix  = ".wh."
	whiteoutMeta    = ".wh..wh."
	whiteoutOpaque  = ".wh..wh..opq"
	overlayOpaque   = "trusted.overlay.opaque"
	overlayXattrs   = "trusted.overlay."
	userOverlayAttr = "user.overlay."
	paxXattrPrefix  = "SCHILY.xattr."
)

// decompress returns the uncompressed stream of a layer or archive, detecting
// gzip and zstd by their magic numbers (anything else is read as plain tar).
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 128<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// unpackLayer unpacks the layer tar (maybe compressed) read from r into the empty
// directory dir and returns its diff ID (the sha256 of the uncompressed tar).
//
// OCI whiteouts become overlayfs' own: ".wh.NAME" a character device 0/0 named
// NAME, ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory, so dir
// can be used as an overlayfs lowerdir as is. Ownership, modes (with setuid,
// setgid, sticky), modification times, symbolic links, hard links, device nodes,
// FIFOs and extended attributes (except trusted.overlay.* and user.overlay.*,
// which would let an image steer overlayfs) are preserved. Every entry is created
// through an os.Root and *at system calls relative to its parent directory, so no
// name, "..", symbolic link or hard link can reach outside dir: such entries fail
// with ErrInvalidLayer.
func unpackLayer(ctx context.Context, dir string, r io.Reader) (v1.Hash, error) {
	dr, closeDR, err := decompress(r)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%w: %v", ErrInvalidLayer, err)
	}
	defer closeDR()
	h := sha256.New()
	tee := io.TeeReader(dr, h)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	u := &unpacker{root: root, buf: make([]byte, 128<<10)}
	defer u.close()
	tr := tar.NewReader(tee)
	for {
		if err := ctx.Err(); err != nil {
			return v1.Hash{}, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%w: %v", ErrInvalidLayer, err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	if err := u.finish(); err != nil {
		return v1.Hash{}, err
	}
	// The diff ID covers the whole tar stream, including the end-of-archive
	// blocks and any padding after them.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return v1.Hash{}, fmt.Errorf("%w: %v", ErrInvalidLayer, err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
}

type unpacker struct {
	root *os.Root
	buf  []byte
	// The last parent directory opened (entries come grouped by directory).
	cachedDir string
	cached    *os.File
	dirTimes  []dirTime
}

type dirTime struct {
	rel          string
	atime, mtime time.Time
}

func (u *unpacker) close() {
	if u.cached != nil {
		u.cached.Close()
	}
	u.root.Close()
}

// cleanName turns a tar entry name into a path relative to the layer root, or
// fails when it would leave it.
func cleanName(name string) (string, error) {
	c := path.Clean(strings.TrimLeft(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%w: %q escapes the layer", ErrInvalidLayer, name)
	}
	return c, nil
}

func splitRel(rel string) (dir, base string) {
	dir, base = path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, base
}

// parent returns the directory dir (created, with mode 0755, when missing),
// resolved inside the root.
func (u *unpacker) parent(dir string) (*os.File, error) {
	if u.cached != nil && u.cachedDir == dir {
		return u.cached, nil
	}
	if err := u.mkdirAll(dir); err != nil {
		return nil, err
	}
	f, err := u.root.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidLayer, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a directory", ErrInvalidLayer, dir)
	}
	if u.cached != nil {
		u.cached.Close()
	}
	u.cachedDir, u.cached = dir, f
	return f, nil
}

func (u *unpacker) mkdirAll(dir string) error {
	if dir == "." {
		return nil
	}
	cur := ""
	for _, part := range strings.Split(dir, "/") {
		cur = path.Join(cur, part)
		fi, err := u.root.Lstat(cur)
		if err == nil {
			if !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
				return fmt.Errorf("%w: %s is not a directory", ErrInvalidLayer, cur)
			}
			continue // a symbolic link is followed (inside the root only) later
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %v", ErrInvalidLayer, err)
		}
		if err := u.root.Mkdir(cur, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %v", ErrInvalidLayer, err)
		}
		if err := u.root.Chmod(cur, 0o755); err != nil { // not subject to the umask
			return err
		}
	}
	return nil
}

// removeAll removes rel (whatever it is) and forgets a cached directory under it.
func (u *unpacker) removeAll(rel string) error {
	if u.cached != nil && (u.cachedDir == rel || strings.HasPrefix(u.cachedDir, rel+"/")) {
		u.cached.Close()
		u.cached, u.cachedDir = nil, ""
	}
	return u.root.RemoveAll(rel)
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		return nil // the layer root itself: the upper layers own its attributes
	}
	dir, base := splitRel(rel)
	if strings.HasPrefix(rel, whiteoutMeta) && rel != whiteoutOpaque {
		return nil // AUFS metadata (.wh..wh.plnk/...) means nothing to overlayfs
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(dir, base)
	}
	pf, err := u.parent(dir)
	if err != nil {
		return err
	}
	fd := int(pf.Fd())
	var st unix.Stat_t
	if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if !isDir || hdr.Typeflag != tar.TypeDir {
			if err := u.removeAll(rel); err != nil {
				return err
			}
		}
	}
	perm := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(fd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	case tar.TypeReg, tar.TypeGNUSparse:
		nfd, err := unix.Openat(fd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(nfd), rel)
		_, err = io.CopyBuffer(onlyWriter{f}, r, u.buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, fd, base); err != nil {
			return err
		}
	case tar.TypeLink:
		return u.hardlink(fd, base, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			kind = unix.S_IFCHR
		case tar.TypeBlock:
			kind = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(fd, base, kind|perm, int(dev)); err != nil {
			return err
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrInvalidLayer, hdr.Typeflag)
	}
	// Owner before mode: chown clears the setuid and setgid bits.
	if err := unix.Fchownat(fd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := u.xattrs(pf, base, hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(fd, base, perm, 0); err != nil {
			return err
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if hdr.Typeflag == tar.TypeDir {
		// Set after the directory's entries are written (they change its mtime).
		u.dirTimes = append(u.dirTimes, dirTime{rel: rel, atime: atime, mtime: hdr.ModTime})
		return nil
	}
	return utimes(fd, base, atime, hdr.ModTime)
}

// onlyWriter hides *os.File's ReadFrom, whose fallbacks are slower than a plain
// buffered copy from a tar reader.
type onlyWriter struct{ io.Writer }

func utimes(dirfd int, base string, atime, mtime time.Time) error {
	if mtime.IsZero() {
		return nil
	}
	at, err := unix.TimeToTimespec(atime)
	if err != nil {
		return nil // out of the kernel's range: keep the current time
	}
	mt, err := unix.TimeToTimespec(mtime)
	if err != nil {
		return nil
	}
	return unix.UtimesNanoAt(dirfd, base, []unix.Timespec{at, mt}, unix.AT_SYMLINK_NOFOLLOW)
}

func (u *unpacker) hardlink(fd int, base, linkname string) error {
	target, err := cleanName(linkname)
	if err != nil {
		return err
	}
	if target == "." {
		return fmt.Errorf("%w: hard link to the layer root", ErrInvalidLayer)
	}
	tdir, tbase := splitRel(target)
	tf, err := u.root.Open(tdir)
	if err != nil {
		return fmt.Errorf("%w: hard link target %s: %v", ErrInvalidLayer, linkname, err)
	}
	defer tf.Close()
	if err := unix.Linkat(int(tf.Fd()), tbase, fd, base, 0); err != nil {
		return fmt.Errorf("%w: hard link to %s: %v", ErrInvalidLayer, linkname, err)
	}
	return nil
}

func (u *unpacker) xattrs(pf *os.File, base string, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || strings.HasPrefix(name, overlayXattrs) || strings.HasPrefix(name, userOverlayAttr) {
			continue
		}
		p := "/proc/self/fd/" + strconv.Itoa(int(pf.Fd())) + "/" + base
		if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				continue
			}
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

// whiteout converts an OCI whiteout entry in dir to overlayfs' form.
func (u *unpacker) whiteout(dir, base string) error {
	pf, err := u.parent(dir)
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		return unix.Fsetxattr(int(pf.Fd()), overlayOpaque, []byte("y"), 0)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, ...) has no meaning here
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrInvalidLayer, base)
	}
	fd := int(pf.Fd())
	var st unix.Stat_t
	if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		if err := u.removeAll(path.Join(dir, name)); err != nil {
			return err
		}
		if pf, err = u.parent(dir); err != nil {
			return err
		}
		fd = int(pf.Fd())
	}
	return unix.Mknodat(fd, name, unix.S_IFCHR, 0)
}

// finish sets the directories' times, now that their entries are written.
func (u *unpacker) finish() error {
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		dir, base := splitRel(d.rel)
		pf, err := u.root.Open(dir)
		if err != nil {
			continue // replaced by a later entry
		}
		err = utimes(int(pf.Fd()), base, d.atime, d.mtime)
		pf.Close()
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}
