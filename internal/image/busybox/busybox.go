// Package busybox builds peapod's test image from Debian's busybox-static, since
// no registry is reachable from the machines peapod is developed and tested on.
//
// The image has one uncompressed layer: /bin/busybox, a symbolic link for every
// applet `busybox --list-full` names (bin/sh -> busybox, usr/bin/wget ->
// ../../bin/busybox, ...), /etc/passwd and /etc/group with root and nobody,
// /tmp (1777), /root (0700) and the usual empty mount points. Its config runs
// ["sh"] with the standard PATH. Every entry has a fixed time and owner, so the
// same busybox binary always gives the same digest. hack/busybox-image.sh writes
// it as an archive (see mkbusybox); tests build it in-process with Image.
package busybox

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/peapod-dev/peapod/internal/image"
)

const (
	// Name and NameLatest are the names the image is written under.
	Name       = "docker.io/library/busybox:1.36"
	NameLatest = "docker.io/library/busybox:latest"
	// DefaultBinary is where Debian's busybox-static installs busybox.
	DefaultBinary = "/bin/busybox"
	// Path is the image's PATH.
	Path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Names are the names the image is written under.
func Names() []string { return []string{Name, NameLatest} }

// buildTime is the time of every entry and of the config.
func buildTime() time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC) }

// Image builds the image from the statically linked busybox at binary.
func Image(binary string) (v1.Image, error) {
	arch, err := checkStatic(binary)
	if err != nil {
		return nil, err
	}
	applets, err := listApplets(binary)
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	layer, err := layerTar(bin, applets)
	if err != nil {
		return nil, err
	}
	cfg := &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: buildTime()},
		Config:       v1.Config{Cmd: []string{"sh"}, Env: []string{Path}},
		RootFS:       v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   static.NewLayer(layer, types.OCIUncompressedLayer),
		History: v1.History{Created: v1.Time{Time: buildTime()}, CreatedBy: "peapod hack/busybox-image.sh (Debian busybox-static)"},
	})
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// WriteArchive writes the image, named Names(), as an image archive (see
// image.WriteArchive).
func WriteArchive(w io.Writer, binary string) error {
	img, err := Image(binary)
	if err != nil {
		return err
	}
	return image.WriteArchive(w, image.ArchiveImage{Image: img, Names: Names()})
}

// checkStatic fails unless binary is a statically linked ELF executable (the
// dynamically linked busybox of Debian's "busybox" package would not run in an
// image without its libraries), and returns its architecture in Go's terms.
func checkStatic(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", fmt.Errorf("busybox %s: %w (install Debian's busybox-static)", binary, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("busybox %s is dynamically linked: install Debian's busybox-static", binary)
		}
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	case elf.EM_S390:
		return "s390x", nil
	case elf.EM_PPC64:
		return "ppc64le", nil
	}
	return runtime.GOARCH, nil
}

// listApplets returns the applets' install paths ("bin/sh", "usr/bin/wget", ...).
func listApplets(binary string) ([]string, error) {
	out, err := exec.Command(binary, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", binary, err)
	}
	seen := map[string]bool{}
	var applets []string
	for _, line := range strings.Split(string(out), "\n") {
		p := path.Clean(strings.TrimLeft(strings.TrimSpace(line), "/"))
		if p == "." || p == "bin/busybox" || strings.HasPrefix(p, "..") || seen[p] {
			continue
		}
		seen[p] = true
		applets = append(applets, p)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list-full listed no applets", binary)
	}
	return applets, nil
}

type entry struct {
	hdr  tar.Header
	data []byte
}

// layerTar builds the layer, entries sorted by name (parents first).
func layerTar(bin []byte, applets []string) ([]byte, error) {
	entries := map[string]*entry{}
	dir := func(name string, mode int64) {
		entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
	}
	file := func(name string, mode int64, data []byte) {
		entries[name] = &entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
	}
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var"} {
		dir(d, 0o755)
	}
	dir("root", 0o700)
	dir("tmp", 0o1777)
	file("bin/busybox", 0o755, bin)
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\n"))
	for _, a := range applets {
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				dir(d, 0o755)
			}
		}
		target := relTarget(path.Dir(a), "bin/busybox")
		entries[a] = &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: a, Linkname: target, Mode: 0o777}}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		e.hdr.ModTime = buildTime()
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// relTarget is the relative symbolic link from directory dir to target (both
// relative to the image root): ("usr/bin", "bin/busybox") is "../../bin/busybox".
func relTarget(dir, target string) string {
	switch dir {
	case ".":
		return target
	case path.Dir(target):
		return path.Base(target)
	}
	return strings.Repeat("../", strings.Count(dir, "/")+1) + target
}
