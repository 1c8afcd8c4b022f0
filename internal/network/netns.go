package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// ensureSharedDir makes dir exist and be a shared mount point, the way
// `ip netns` treats /run/netns: namespaces bind-mounted into it later
// propagate to mount namespaces copied from the host as shared or slave, and
// so do their unmounts, so a copy elsewhere does not keep a namespace alive.
// It bind-mounts dir onto itself only when it is not a mount point yet, so
// calling it again (or from a restarted agent) stacks nothing.
func ensureSharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	// Not a mount point: make it one.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// unmountDir detaches every mount stacked on dir (ensureSharedDir's
// self-bind); a dir that is not a mount point is fine.
func unmountDir(dir string) error {
	for range 16 {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", dir)
}

// createNetNS makes a new network namespace and bind-mounts it on path (which
// must not exist), so that it lives until removeNetNS, whatever processes
// come and go.
//
// The namespace is made by a goroutine locked to its OS thread: unshare
// moves only that thread into the new namespace, the thread's namespace file
// is bind-mounted, and the goroutine then returns without unlocking, so the
// Go runtime ends the thread instead of reusing it with the wrong namespace.
func createNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create network namespace file: %w", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return err
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread must die with the goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			done <- fmt.Errorf("bind-mount network namespace on %s: %w", path, err)
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// removeNetNS unmounts and deletes a namespace made by createNetNS; a
// missing or unmounted file is fine.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace %s: %w", path, err)
	}
	return nil
}

// nsState says whether path exists and whether it is a live network
// namespace (a bind mount of nsfs). After a reboot the file is still there
// but is a plain empty file.
func nsState(path string) (exists, live bool) {
	if _, err := os.Lstat(path); err != nil {
		return false, false
	}
	n, err := ns.GetNS(path)
	if err != nil {
		return true, false
	}
	_ = n.Close()
	return true, true
}
