package oci

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// mountOverlay mounts lower (topmost first) with a writable upper layer at
// target.
func mountOverlay(target, upper, work string, lower []string) error {
	for _, p := range append(append([]string{}, lower...), upper, work, target) {
		if strings.ContainsAny(p, ":,") {
			return fmt.Errorf("oci: overlay path %q contains ':' or ',': %w", p, runtime.ErrInvalid)
		}
	}
	for _, d := range []string{upper, work, target} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("oci: %w", err)
		}
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("oci: overlay options for %d layers are %d bytes, above the kernel's page-size limit: %w",
			len(lower), len(opts), runtime.ErrInvalid)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("oci: mounting overlay at %s: %w", target, err)
	}
	return nil
}

// mountShm mounts the pod's /dev/shm tmpfs at target.
func mountShm(target string, size int64) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	opts := "mode=1777,size=" + strconv.FormatInt(size, 10)
	if err := unix.Mount("shm", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("oci: mounting the pod's shm at %s: %w", target, err)
	}
	return nil
}

// unmount unmounts target (every mount stacked on it); not being mounted is
// success. A busy mount is retried briefly, then detached.
func unmount(target string) error {
	busy := 0
	for range 100 {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			continue // maybe more stacked there
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && busy < 20:
			busy++
			time.Sleep(time.Duration(busy) * time.Millisecond)
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("oci: detaching %s: %w", target, err)
			}
		default:
			return fmt.Errorf("oci: unmounting %s: %w", target, err)
		}
	}
	return fmt.Errorf("oci: %s stays mounted", target)
}
