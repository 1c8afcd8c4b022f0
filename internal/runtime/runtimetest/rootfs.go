package runtimetest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// BusyboxPath is the static busybox the suite's root filesystems are made
// of (Debian's busybox-static).
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs builds a root filesystem of busybox and its applet links in
// a temporary directory removed when t ends. It requires (see Require) a
// static busybox at BusyboxPath.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(BusyboxPath, "--list").Output()
	Require(t, err == nil, "a static busybox at "+BusyboxPath+" (Debian package busybox-static)")
	dir, err := os.MkdirTemp("", "pp-busybox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // a non-root user must reach /bin
		t.Fatal(err)
	}
	if err := WriteBusyboxRootfs(dir, strings.Fields(string(out))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteBusyboxRootfs fills dir with /bin/busybox, a link per applet and the
// usual empty directories.
func WriteBusyboxRootfs(dir string, applets []string) error {
	for _, d := range []string{"bin", "dev", "proc", "sys", "etc", "tmp", "var/www", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	src, err := os.Open(BusyboxPath)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "bin", "busybox"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	for _, a := range applets {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// criLine is one line of the CRI log format: TIMESTAMP STREAM TAG CONTENT.
var criLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([FP]) (.*)$`)

// LogEntry is a parsed CRI log line.
type LogEntry struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content string
}

// ParseCRILog parses a log file in the CRI format, checking every line.
func ParseCRILog(path string) ([]LogEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []LogEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := criLine.FindStringSubmatch(sc.Text())
		if m == nil {
			return out, fmt.Errorf("not a CRI log line: %q", sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return out, fmt.Errorf("CRI log timestamp %q: %w", m[1], err)
		}
		out = append(out, LogEntry{Time: ts, Stream: m[2], Partial: m[3] == "P", Content: m[4]})
	}
	return out, sc.Err()
}

// LogLines returns the content of a container's log lines (stdout and
// stderr, in order), failing the test on a malformed line.
func (f *Fixture) LogLines(path string) []string {
	f.T.Helper()
	es, err := ParseCRILog(path)
	if err != nil {
		f.T.Fatalf("log %s: %v", path, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Content)
	}
	return out
}
