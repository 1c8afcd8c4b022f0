package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// emptyDirPerm is the mode of emptyDir directories (and of the directories
// the other kinds are written to), as the kubelet's emptyDir plugin.
const emptyDirPerm os.FileMode = 0o777

// makeDir creates dir (and its parents) and gives it mode emptyDirPerm
// whatever the umask. It reports whether dir was created.
func makeDir(dir string) (bool, error) {
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return false, err
	}
	if err := os.Mkdir(dir, emptyDirPerm); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, os.Chmod(dir, emptyDirPerm)
}

// mountTmpfs mounts a tmpfs on dir unless one is already there; size is the
// size option in bytes (0: the kernel's default, half of RAM), with noswap
// when the kernel has it.
func (m *Manager) mountTmpfs(dir string, size int64) error {
	if !m.tmpfs {
		return nil
	}
	mounted, err := isTmpfs(dir)
	if err != nil {
		return err
	}
	if mounted {
		return nil
	}
	var opts []string
	if size > 0 {
		opts = append(opts, fmt.Sprintf("size=%d", size))
	}
	// As the kubelet: noswap (Linux 6.4+) keeps secrets out of swap; a
	// kernel that refuses it gets the mount without.
	if !m.noswapUnsupported.Load() {
		withNoswap := strings.Join(append(opts, "noswap"), ",")
		err := unix.Mount("tmpfs", dir, "tmpfs", 0, withNoswap)
		if err == nil {
			m.log.Debug("tmpfs mounted", "dir", dir, "options", withNoswap)
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
		m.noswapUnsupported.Store(true)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, strings.Join(opts, ",")); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	m.log.Debug("tmpfs mounted", "dir", dir, "options", strings.Join(opts, ","))
	return nil
}

// isTmpfs reports whether a tmpfs is mounted on dir.
func isTmpfs(dir string) (bool, error) {
	mounted, err := mountinfo.Mounted(dir)
	if err != nil || !mounted {
		return false, err
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fs.Type == unix.TMPFS_MAGIC, nil
}

// removeVolume unmounts whatever is mounted at or below dir and removes it.
func removeVolume(dir string) error {
	if err := unmountAll(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// unmountAll unmounts every mount at or below dir, deepest first (lazily when
// one is busy), and fails if any is left afterwards: the caller may then
// remove the tree without deleting through a mount.
func unmountAll(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	// Stacked mounts need one unmount each; a few rounds cover any
	// realistic stack.
	for range 8 {
		mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
		if err != nil {
			return fmt.Errorf("read mountinfo: %w", err)
		}
		if len(mounts) == 0 {
			return nil
		}
		sort.Slice(mounts, func(i, j int) bool {
			di, dj := strings.Count(mounts[i].Mountpoint, "/"), strings.Count(mounts[j].Mountpoint, "/")
			if di != dj {
				return di > dj
			}
			return mounts[i].ID > mounts[j].ID
		})
		for _, mi := range mounts {
			err := unix.Unmount(mi.Mountpoint, unix.UMOUNT_NOFOLLOW)
			if errors.Is(err, unix.EBUSY) {
				err = unix.Unmount(mi.Mountpoint, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			}
			if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", mi.Mountpoint, err)
			}
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(real))
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("%d mounts remain under %s (first: %s)", len(mounts), dir, mounts[0].Mountpoint)
	}
	return nil
}
