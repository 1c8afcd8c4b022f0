package e2e

// Helpers shared by the kubectl_*_test.go files: reading testdata, running
// kubectl expecting failure, parsing kubectl's tables, watching in the
// background and speaking plain HTTPS to the API without credentials.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startKubectlServer starts a server for the kubectl tests. The server is
// killed (SIGKILL, by PID) when the test ends: these tests check the API, not
// graceful shutdown, and a kill saves the seconds a graceful stop takes.
func startKubectlServer(t *testing.T) *Server {
	t.Helper()
	s := StartServer(t)
	t.Cleanup(s.Kill) // runs before the harness' own Stop, which then finds it gone
	waitBootstrap(t, s, 30*time.Second, false)
	return s
}

// on returns a view of s whose helpers (MustKubectl, ...) report to t, so that
// subtests sharing one server fail themselves, not their parent.
func on(t testing.TB, s *Server) *Server { return s.For(t) }

// waitBootstrap waits until what kubectl users rely on right after start exists:
// the default namespace's ServiceAccount (without it pods are refused) and, with
// withService, the kubernetes Service. It returns how long that took.
func waitBootstrap(t testing.TB, s *Server, timeout time.Duration, withService bool) time.Duration {
	t.Helper()
	start := time.Now()
	cs := s.Client()
	Eventually(t, timeout, func() error {
		ctx := context.Background()
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		if withService {
			_, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
			return err
		}
		return nil
	})
	return time.Since(start)
}

// waitKubernetesService is for tests that list or allocate Services: the
// kubernetes Service can lag the server's readiness (see "usable when ready").
func waitKubernetesService(t testing.TB, s *Server) {
	t.Helper()
	if lag := waitBootstrap(t, s, 30*time.Second, true); lag > 2*time.Second {
		t.Logf("NOTE: waited %s for the kubernetes Service", lag.Round(time.Millisecond))
	}
}

// errorf is fmt.Errorf, short for Eventually conditions.
func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// testdata returns the contents of test/e2e/testdata/<name>.
func testdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("testdata: %v", err)
	}
	return string(b)
}

// testdataPath is the absolute path of test/e2e/testdata/<name>, for `-f FILE`.
func testdataPath(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testdata: %v", err)
	}
	return p
}

// kubectlFail runs kubectl, requires a non-zero exit and returns stdout+stderr.
func kubectlFail(t testing.TB, s *Server, stdin string, args ...string) string {
	t.Helper()
	r := s.KubectlRun(stdin, args...)
	if r.Err == nil {
		t.Fatalf("kubectl %s: succeeded, want failure\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Stdout, r.Stderr)
	}
	if _, ok := r.Err.(*exec.ExitError); !ok {
		t.Fatalf("kubectl %s: %v (not an exit status)\nstderr: %s", strings.Join(args, " "), r.Err, r.Stderr)
	}
	return r.Stdout + r.Stderr
}

// mustContain fails when out lacks any of the substrings.
func mustContain(t testing.TB, out string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(out, sub) {
			t.Errorf("output lacks %q; output:\n%s", sub, out)
		}
	}
}

// mustNotContain fails when out has any of the substrings.
func mustNotContain(t testing.TB, out string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(out, sub) {
			t.Errorf("output unexpectedly has %q; output:\n%s", sub, out)
		}
	}
}

// mustEqual fails when got != want (both trimmed of surrounding white space).
func mustEqual(t testing.TB, what, got, want string) {
	t.Helper()
	if strings.TrimSpace(got) != strings.TrimSpace(want) {
		t.Errorf("%s:\n got: %q\nwant: %q", what, strings.TrimSpace(got), strings.TrimSpace(want))
	}
}

var spaces = regexp.MustCompile(`[ \t]+`)

// squash collapses runs of blanks to one space in every line and trims the lines,
// so that `describe` output can be matched without depending on column widths.
func squash(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(spaces.ReplaceAllString(l, " "))
	}
	return strings.Join(lines, "\n")
}

// mustHaveLines fails unless every line (white space squashed) appears in out,
// consecutively and in order.
func mustHaveLines(t testing.TB, out string, lines ...string) {
	t.Helper()
	want := squash(strings.Join(lines, "\n"))
	if !strings.Contains("\n"+squash(out)+"\n", "\n"+want+"\n") {
		t.Errorf("output lacks the lines\n%s\noutput:\n%s", want, out)
	}
}

var columnGap = regexp.MustCompile(`\s{2,}`)

// table is kubectl's human-readable output split into cells. Cells are separated
// by two or more blanks, as kubectl's tabwriter pads them (a header such as
// "NOMINATED NODE" keeps its single space). Empty cells can't be represented, so
// callers use it for tables whose cells are never empty.
type table struct {
	Header []string
	Rows   [][]string
	raw    string
}

func parseTable(t testing.TB, out string) table {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		t.Fatalf("no table in output %q", out)
	}
	tb := table{raw: out}
	for i, l := range lines {
		cells := columnGap.Split(strings.TrimSpace(l), -1)
		if i == 0 {
			tb.Header = cells
		} else {
			tb.Rows = append(tb.Rows, cells)
		}
	}
	return tb
}

// wantHeader fails unless the header is exactly cols.
func (tb table) wantHeader(t testing.TB, cols ...string) {
	t.Helper()
	if strings.Join(tb.Header, "|") != strings.Join(cols, "|") {
		t.Errorf("header is %q, want %q; output:\n%s", tb.Header, cols, tb.raw)
	}
}

// row returns the row whose cell in column col is val.
func (tb table) row(t testing.TB, col, val string) map[string]string {
	t.Helper()
	idx := -1
	for i, h := range tb.Header {
		if h == col {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("no column %q in %q", col, tb.Header)
	}
	for _, r := range tb.Rows {
		if idx < len(r) && r[idx] == val {
			if len(r) != len(tb.Header) {
				t.Fatalf("row %q has %d cells, header has %d; output:\n%s", r, len(r), len(tb.Header), tb.raw)
			}
			m := map[string]string{}
			for i, h := range tb.Header {
				m[h] = r[i]
			}
			return m
		}
	}
	t.Fatalf("no row with %s=%s; output:\n%s", col, val, tb.raw)
	return nil
}

// column returns every row's cell in column col, in output order.
func (tb table) column(t testing.TB, col string) []string {
	t.Helper()
	idx := -1
	for i, h := range tb.Header {
		if h == col {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatalf("no column %q in %q", col, tb.Header)
	}
	var out []string
	for _, r := range tb.Rows {
		if idx < len(r) {
			out = append(out, r[idx])
		}
	}
	return out
}

// wantCells fails unless the row has each given column=value.
func wantCells(t testing.TB, row map[string]string, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		if got := row[kv[i]]; got != kv[i+1] {
			t.Errorf("column %s = %q, want %q (row %v)", kv[i], got, kv[i+1], row)
		}
	}
}

var ageRe = regexp.MustCompile(`^(\d+s|\d+m\d*s?|\d+m)$`)

// wantAge fails unless cell looks like a young kubectl AGE ("0s", "12s", "2m3s").
func wantAge(t testing.TB, cell string) {
	t.Helper()
	if !ageRe.MatchString(cell) {
		t.Errorf("AGE cell %q is not a recent age", cell)
	}
}

// notFound asserts that `kubectl get <resource> <name>` answers upstream's NotFound.
func notFound(t testing.TB, s *Server, ns, resource, name string) {
	t.Helper()
	args := []string{"get", resource, name}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out := kubectlFail(t, s, "", args...)
	mustContain(t, out, fmt.Sprintf(`Error from server (NotFound): %s %q not found`, resourcePlural(resource), name))
}

// resourcePlural is the plural kubectl's NotFound message uses for a short form.
func resourcePlural(r string) string {
	switch r {
	case "pod", "po", "pods":
		return "pods"
	case "cm", "configmap", "configmaps":
		return "configmaps"
	case "secret", "secrets":
		return "secrets"
	case "svc", "service", "services":
		return "services"
	case "deploy", "deployment", "deployments":
		return "deployments.apps"
	case "ns", "namespace", "namespaces":
		return "namespaces"
	case "job", "jobs":
		return "jobs.batch"
	}
	return r
}

// jsonpath is `kubectl get ... -o jsonpath=TEMPLATE`.
func jsonpath(t testing.TB, s *Server, tmpl string, args ...string) string {
	t.Helper()
	return s.MustKubectl(append(append([]string{"get"}, args...), "-o", "jsonpath="+tmpl)...)
}

// editorScript writes an executable shell script for KUBE_EDITOR that runs body
// with the file to edit as "$1".
func editorScript(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "editor.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nset -e\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// bgKubectl is a kubectl process running in the background (e.g. `get -w`)
// whose output lines are collected as they arrive.
type bgKubectl struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	lines  []string
	stderr strings.Builder
}

func startKubectl(t testing.TB, s *Server, args ...string) *bgKubectl {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, s.Kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.Kubeconfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	b := &bgKubectl{cancel: cancel, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &b.mu, w: &b.stderr}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(b.stop)
	return b
}

// stop kills the process (by its own context) and waits for it.
func (b *bgKubectl) stop() {
	b.cancel()
	<-b.done
}

// Lines is what the process printed on stdout so far.
func (b *bgKubectl) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines...)
}

func (b *bgKubectl) Stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// waitLine waits until some line, split into cells, satisfies match.
func (b *bgKubectl) waitLine(t testing.TB, timeout time.Duration, what string, match func(cells []string) bool) []string {
	t.Helper()
	var found []string
	Eventually(t, timeout, func() error {
		for _, l := range b.Lines() {
			cells := columnGap.Split(strings.TrimSpace(l), -1)
			if match(cells) {
				found = cells
				return nil
			}
		}
		return fmt.Errorf("no line with %s yet; lines: %q; stderr: %s", what, b.Lines(), b.Stderr())
	})
	return found
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// anonymousGet is an HTTPS GET without any credentials (the server's
// certificate is not verified: only the status and body matter).
func anonymousGet(t testing.TB, s *Server, path string) (int, string) {
	t.Helper()
	c := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	resp, err := c.Get("https://127.0.0.1:" + strconv.Itoa(s.Port) + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// grepLines returns the lines of s that contain any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
