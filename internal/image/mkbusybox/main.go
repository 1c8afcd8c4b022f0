// Command mkbusybox writes peapod's busybox test image (see package busybox) as an
// image archive that `peapod image load`, `docker load` and `ctr import` accept:
//
//	go run ./internal/image/mkbusybox [-busybox /bin/busybox] OUT.tar
//
// hack/busybox-image.sh runs it. The archive is written to a temporary file and
// renamed, so OUT.tar is never left half-written.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/peapod-dev/peapod/internal/image/busybox"
)

func main() {
	bin := flag.String("busybox", busybox.DefaultBinary, "statically linked busybox to package (Debian's busybox-static)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-busybox PATH] OUT.tar\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*bin, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "mkbusybox:", err)
		os.Exit(1)
	}
}

func run(bin, out string) error {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	if err := busybox.WriteArchive(io.MultiWriter(f, h), bin); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return err
	}
	fmt.Printf("%s: %s, %s (archive sha256:%x)\n", out, busybox.Name, busybox.NameLatest, h.Sum(nil))
	return nil
}
