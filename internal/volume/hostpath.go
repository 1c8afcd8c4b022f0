package volume

import (
	"errors"
	"fmt"
	"os"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/volume/util/hostutil"
	"k8s.io/kubernetes/pkg/volume/validation"
)

// setupHostPath checks a hostPath volume as the kubelet's hostPath plugin
// does: no ".." in the path; type "" checks nothing; DirectoryOrCreate and
// FileOrCreate create what is missing (0755 directories, an empty 0644
// file); every other type must match what is there.
func setupHostPath(hu hostutil.HostUtils, src *v1.HostPathVolumeSource) error {
	if err := validation.ValidatePathNoBacksteps(src.Path); err != nil {
		return fmt.Errorf("invalid HostPath `%s`: %v", src.Path, err)
	}
	if src.Type == nil || *src.Type == v1.HostPathUnset {
		return nil
	}
	path := src.Path
	exists := func() bool {
		ok, err := hu.PathExists(path)
		return ok && err == nil
	}
	is := func(t v1.HostPathType) bool {
		ft, err := hu.GetFileType(path)
		return err == nil && string(ft) == string(t)
	}
	switch *src.Type {
	case v1.HostPathDirectoryOrCreate:
		if !exists() {
			return makeHostDir(path)
		}
		fallthrough
	case v1.HostPathDirectory:
		if !exists() || !is(v1.HostPathDirectory) {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", path)
		}
	case v1.HostPathFileOrCreate:
		if !exists() {
			return makeHostFile(path)
		}
		fallthrough
	case v1.HostPathFile:
		if !exists() || !is(v1.HostPathFile) {
			return fmt.Errorf("hostPath type check failed: %s is not a file", path)
		}
	case v1.HostPathSocket:
		if !is(v1.HostPathSocket) {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", path)
		}
	case v1.HostPathCharDev:
		if !is(v1.HostPathCharDev) {
			return fmt.Errorf("hostPath type check failed: %s is not a character device", path)
		}
	case v1.HostPathBlockDev:
		if !is(v1.HostPathBlockDev) {
			return fmt.Errorf("hostPath type check failed: %s is not a block device", path)
		}
	default:
		return fmt.Errorf("%s is an invalid volume type", *src.Type)
	}
	return nil
}

// makeHostDir creates a directory (and its parents) with mode 0755 (less
// the umask, as upstream).
func makeHostDir(path string) error {
	if err := os.MkdirAll(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// makeHostFile creates an empty file with mode 0644 (less the umask) if
// nothing is there.
func makeHostFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE, 0o644)
	if f != nil {
		_ = f.Close()
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}
