package kubeletapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/remotecommand"

	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/runtime"
)

const criTime = "2006-01-02T15:04:05.000000000Z07:00"

// criLine is one line of a CRI log file.
func criLine(ts time.Time, stream, tag, msg string) string {
	return fmt.Sprintf("%s %s %s %s\n", ts.UTC().Format(criTime), stream, tag, msg)
}

func writeLog(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "")); err != nil {
		t.Fatal(err)
	}
}

func TestContainerLogs(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	base := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	now := time.Now()

	pod := h.addPod("ns1", "web", "uid-1", "app", "side")
	current := filepath.Join(dir, "app-1.log")
	h.rt.add("web-app-1", runtime.ContainerExited, current)
	writeLog(t, current,
		criLine(base, "stdout", "F", "one"),
		criLine(base.Add(time.Second), "stderr", "F", "two (err)"),
		criLine(base.Add(2*time.Second), "stdout", "P", "three "),
		criLine(base.Add(2*time.Second), "stdout", "F", "continued"),
		criLine(base.Add(3*time.Second), "stdout", "F", "four"),
	)
	previous := filepath.Join(dir, "app-0.log")
	h.rt.add("web-app-0", runtime.ContainerExited, previous)
	writeLog(t, previous, criLine(base.Add(-time.Hour), "stdout", "F", "before the restart"))
	pod.containers["app"].previous = &kubeletapi.ContainerRef{ID: "web-app-0"}

	// A log with an old and a recent line, for sinceSeconds.
	side := filepath.Join(dir, "side.log")
	h.rt.add("web-side-1", runtime.ContainerRunning, side)
	writeLog(t, side, criLine(now.Add(-time.Hour), "stdout", "F", "old"), criLine(now, "stdout", "F", "recent"))

	c := h.httpClient()
	for _, tc := range []struct {
		name, query, want string
	}{
		{"all", "", "one\ntwo (err)\nthree continued\nfour\n"},
		{"tail", "tailLines=2", "continued\nfour\n"},
		{"legacy tail", "tail=1", "four\n"},
		{"legacy tail all", "tail=all", "one\ntwo (err)\nthree continued\nfour\n"},
		{"timestamps", "timestamps=true&tailLines=1", base.Add(3*time.Second).Format(criTime) + " four\n"},
		{"since time", "sinceTime=" + url.QueryEscape(base.Add(time.Second).Format(time.RFC3339)), "two (err)\nthree continued\nfour\n"},
		{"limit bytes", "limitBytes=6", "one\ntw"},
		{"stdout only", "stream=Stdout", "one\nthree continued\nfour\n"},
		{"stderr only", "stream=Stderr", "two (err)\n"},
		{"previous", "previous=true", "before the restart\n"},
	} {
		code, body := h.get(t, c, "/containerLogs/ns1/web/app?"+tc.query)
		if code != http.StatusOK || body != tc.want {
			t.Errorf("%s (%s): %d %q, want %q", tc.name, tc.query, code, body, tc.want)
		}
	}
	if code, body := h.get(t, c, "/containerLogs/ns1/web/side?sinceSeconds=60"); code != http.StatusOK || body != "recent\n" {
		t.Errorf("sinceSeconds=60: %d %q", code, body)
	}
}

func TestContainerLogsErrors(t *testing.T) {
	h := newHarness(t)
	h.addPod("ns1", "web", "uid-1", "app", "nolog", "gone")
	h.rt.add("web-nolog-1", runtime.ContainerRunning, filepath.Join(t.TempDir(), "missing.log"))
	h.rt.mu.Lock()
	delete(h.rt.containers, "web-gone-1")
	h.rt.mu.Unlock()
	waiting := h.addPod("ns1", "new", "uid-2", "app", "pull", "blank", "unknown")
	waiting.containers["app"].err = &kubeletapi.WaitingError{Reason: "ContainerCreating"}
	waiting.containers["pull"].err = fmt.Errorf("status: %w", &kubeletapi.WaitingError{Reason: "ImagePullBackOff"})
	waiting.containers["blank"].err = &kubeletapi.WaitingError{}
	waiting.containers["unknown"].err = kubeletapi.ErrNoInstance

	c := h.httpClient()
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/containerLogs/ns1/nope/app", 404, `pod "nope" does not exist`},
		{"/containerLogs/ns1/web/nope", 404, `container "nope" not found in pod "web"`},
		{"/containerLogs/ns1/web/app?previous=true", 400, `previous terminated container "app" in pod "web" not found`},
		{"/containerLogs/ns1/new/app", 400, `container "app" in pod "new" is waiting to start: ContainerCreating`},
		{"/containerLogs/ns1/new/pull", 400, `container "pull" in pod "new" is waiting to start: trying and failing to pull image`},
		{"/containerLogs/ns1/new/blank", 400, `container "blank" in pod "new" is waiting to start - no logs yet`},
		{"/containerLogs/ns1/new/unknown", 400, `container "unknown" in pod "new" is not available`},
		{"/containerLogs/ns1/web/gone", 400, `unable to retrieve container logs for web-gone-1`},
		{"/containerLogs/ns1/web/app?tailLines=-1", 422, `{"message": "Invalid request."}`},
		{"/containerLogs/ns1/web/app?sinceSeconds=5&sinceTime=2025-01-01T00:00:00Z", 422, `{"message": "Invalid request."}`},
		{"/containerLogs/ns1/web/app?tailLines=abc", 400, `{"message": "Unable to decode query."}`},
	} {
		code, body := h.get(t, c, tc.path)
		if code != tc.code || body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	code, body := h.get(t, c, "/containerLogs/ns1/web/nolog")
	if code != 400 || !strings.HasPrefix(body, "failed to try resolving symlinks in path ") {
		t.Errorf("missing log file: %d %q", code, body)
	}
}

// readLine reads one line from lines or fails after the timeout.
func readLine(t *testing.T, lines <-chan string, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("log stream ended")
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("no log line within %s", timeout)
	}
	return ""
}

func TestContainerLogsFollow(t *testing.T) {
	h := newHarness(t)
	h.addPod("ns1", "web", "uid-1", "app")
	path := filepath.Join(t.TempDir(), "app.log")
	h.rt.add("web-app-1", runtime.ContainerRunning, path)
	writeLog(t, path, criLine(time.Now(), "stdout", "F", "first"), criLine(time.Now(), "stdout", "F", "second"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+h.addr+"/containerLogs/ns1/web/app?follow=true&tailLines=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %s", resp.Status)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	if got := readLine(t, lines, 10*time.Second); got != "second" {
		t.Fatalf("first followed line %q, want second (tailLines=1)", got)
	}
	writeLog(t, path, criLine(time.Now(), "stderr", "F", "appended"))
	if got := readLine(t, lines, 10*time.Second); got != "appended" {
		t.Fatalf("appended line: %q", got)
	}
	writeLog(t, path, criLine(time.Now(), "stdout", "P", "part "), criLine(time.Now(), "stdout", "F", "whole"))
	if got := readLine(t, lines, 10*time.Second); got != "part whole" {
		t.Fatalf("partial lines: %q", got)
	}

	// Once the container exits, the rest of the file is sent and the stream
	// ends.
	writeLog(t, path, criLine(time.Now(), "stdout", "F", "last words"))
	h.rt.setState("web-app-1", runtime.ContainerExited)
	if got := readLine(t, lines, 10*time.Second); got != "last words" {
		t.Fatalf("last line: %q", got)
	}
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("unexpected line after exit: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after the container exited")
	}
}

// TestShutdownEndsSessions: a follow and an exec in progress end when the
// server shuts down.
func TestShutdownEndsSessions(t *testing.T) {
	h := newHarness(t)
	h.addPod("ns1", "web", "uid-1", "app")
	path := filepath.Join(t.TempDir(), "app.log")
	h.rt.add("web-app-1", runtime.ContainerRunning, path)
	writeLog(t, path, criLine(time.Now(), "stdout", "F", "hello"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+h.addr+"/containerLogs/ns1/web/app?follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	followDone := make(chan string)
	go func() {
		b := make([]byte, 1024)
		var all []byte
		for {
			n, err := resp.Body.Read(b)
			all = append(all, b[:n]...)
			if err != nil {
				followDone <- string(all)
				return
			}
		}
	}()

	execDone := make(chan error, 1)
	go func() {
		execDone <- execStream(ctx, h, spdyExecutor, "/exec/ns1/web/app?command=sleep&output=1", remotecommand.StreamOptions{Stdout: io.Discard})
	}()
	if got := <-h.rt.started; got != "exec:web-app-1" {
		t.Fatalf("started %q", got)
	}

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	start := time.Now()
	if err := h.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %s", d)
	}
	select {
	case got := <-followDone:
		if got != "hello\n" {
			t.Errorf("follow got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Error("follow did not end")
	}
	select {
	case <-execDone:
	case <-time.After(10 * time.Second):
		t.Error("exec did not end")
	}
}
