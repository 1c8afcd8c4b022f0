package kubeletapi_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/runtime"
)

const apiserverCN = "kube-apiserver-kubelet-client"

// ca is a test certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t testing.TB, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *ca) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// issue signs a leaf; it returns PEM certificate and key.
func (c *ca) issue(t testing.TB, cn string, orgs []string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// fakeContainer is one container of a fake pod.
type fakeContainer struct {
	current  kubeletapi.ContainerRef
	previous *kubeletapi.ContainerRef
	err      error // returned for the current instance
}

type fakePod struct {
	uid        types.UID
	containers map[string]*fakeContainer
	sandbox    kubeletapi.SandboxRef
	sandboxErr error
}

// fakePods implements kubeletapi.Pods over a map "namespace/name".
type fakePods struct {
	mu   sync.Mutex
	pods map[string]*fakePod
}

func (f *fakePods) pod(namespace, name string, uid types.UID) (*fakePod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[namespace+"/"+name]
	if !ok || (uid != "" && uid != p.uid) {
		return nil, fmt.Errorf("pod %s/%s: %w", namespace, name, kubeletapi.ErrPodNotFound)
	}
	return p, nil
}

func (f *fakePods) Container(namespace, name string, uid types.UID, container string, previous bool) (kubeletapi.ContainerRef, error) {
	p, err := f.pod(namespace, name, uid)
	if err != nil {
		return kubeletapi.ContainerRef{}, err
	}
	c, ok := p.containers[container]
	if !ok {
		return kubeletapi.ContainerRef{}, fmt.Errorf("container %s: %w", container, kubeletapi.ErrContainerNotFound)
	}
	if previous {
		if c.previous == nil {
			return kubeletapi.ContainerRef{}, fmt.Errorf("container %s: previous: %w", container, kubeletapi.ErrNoInstance)
		}
		return *c.previous, nil
	}
	if c.err != nil {
		return kubeletapi.ContainerRef{}, c.err
	}
	return c.current, nil
}

func (f *fakePods) Sandbox(namespace, name string, uid types.UID) (kubeletapi.SandboxRef, error) {
	p, err := f.pod(namespace, name, uid)
	if err != nil {
		return kubeletapi.SandboxRef{}, err
	}
	return p.sandbox, p.sandboxErr
}

// fakeRuntime implements kubeletapi.Runtime. Exec runs a few built-in
// commands:
//
//	cat          copies stdin to stdout
//	head N       copies N lines of stdin to stdout
//	echo ARGS    writes ARGS to stdout and "err:ARGS" to stderr
//	exit N       exits with code N
//	resize       writes each terminal size received as "WxH\n" until stdin
//	             ends or the size is 1x1
//	test -d PATH exits 0 when PATH is one of dirs, else 1
//	tar cf - P   writes a tar archive of file P (from files) to stdout
//	tar -xmf - -C DIR  reads a tar archive from stdin into files
//	fail         fails to run (an error, no exit code)
//	sleep        blocks until ctx ends (exit code 137)
//
// Attach copies stdin lines to stdout with a prefix until stdin ends or a
// line is "bye"; with a resize channel it reports sizes as resize does.
type fakeRuntime struct {
	mu         sync.Mutex
	containers map[string]*runtime.ContainerStatus
	files      map[string]string // path in "the container": content (tar)
	dirs       map[string]bool   // directories (test -d)
	execs      []runtime.ExecOptions
	execIDs    []string
	attaches   []string
	started    chan string // receives "exec:ID" / "attach:ID" when a session starts (buffered)
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{
		containers: map[string]*runtime.ContainerStatus{},
		files:      map[string]string{},
		dirs:       map[string]bool{"/": true},
		started:    make(chan string, 100),
	}
}

func (f *fakeRuntime) add(id string, state runtime.ContainerState, logPath string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[id] = &runtime.ContainerStatus{ID: id, State: state, LogPath: logPath}
}

func (f *fakeRuntime) setState(id string, state runtime.ContainerState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[id].State = state
}

func (f *fakeRuntime) ContainerStatus(_ context.Context, id string) (*runtime.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	cp := *c
	return &cp, nil
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	f.mu.Lock()
	c, ok := f.containers[id]
	running := ok && c.State == runtime.ContainerRunning
	f.execs = append(f.execs, opts)
	f.execIDs = append(f.execIDs, id)
	f.mu.Unlock()
	if !running {
		return 0, fmt.Errorf("container %s: %w", id, runtime.ErrFailedPrecondition)
	}
	f.started <- "exec:" + id
	if len(opts.Cmd) == 0 {
		return 0, fmt.Errorf("no command: %w", runtime.ErrInvalid)
	}
	switch opts.Cmd[0] {
	case "cat":
		if opts.Stdin != nil && opts.Stdout != nil {
			_, _ = io.Copy(opts.Stdout, opts.Stdin)
		}
		return 0, nil
	case "head":
		n, _ := strconv.Atoi(opts.Cmd[1])
		r := bufio.NewReader(opts.Stdin)
		for range n {
			line, err := r.ReadString('\n')
			_, _ = io.WriteString(opts.Stdout, line)
			if err != nil {
				break
			}
		}
		return 0, nil
	case "echo":
		msg := strings.Join(opts.Cmd[1:], " ")
		if opts.Stdout != nil {
			_, _ = io.WriteString(opts.Stdout, msg+"\n")
		}
		if opts.Stderr != nil {
			_, _ = io.WriteString(opts.Stderr, "err:"+msg+"\n")
		}
		return 0, nil
	case "exit":
		n, _ := strconv.Atoi(opts.Cmd[1])
		return n, nil
	case "resize":
		reportSizes(opts.Stdin, opts.Stdout, opts.Resize)
		return 0, nil
	case "test":
		// test -d PATH
		f.mu.Lock()
		_, isDir := f.dirs[opts.Cmd[len(opts.Cmd)-1]]
		f.mu.Unlock()
		if isDir {
			return 0, nil
		}
		return 1, nil
	case "tar":
		return f.tar(opts)
	case "fail":
		return 0, errors.New("boom")
	case "sleep":
		<-ctx.Done()
		return 137, nil
	}
	return 127, nil
}

// tar is the fake tar command kubectl cp runs.
func (f *fakeRuntime) tar(opts runtime.ExecOptions) (int, error) {
	args := opts.Cmd[1:]
	if slices.Contains(args, "-xmf") {
		dir := "/"
		if i := slices.Index(args, "-C"); i >= 0 && i+1 < len(args) {
			dir = args[i+1]
		}
		tr := tar.NewReader(opts.Stdin)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				return 0, nil
			}
			if err != nil {
				fmt.Fprintf(opts.Stderr, "tar: %v\n", err)
				return 2, nil
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return 2, nil
			}
			f.mu.Lock()
			f.files[path.Join(dir, hdr.Name)] = string(b)
			f.mu.Unlock()
		}
	}
	if len(args) == 3 && args[0] == "cf" && args[1] == "-" {
		f.mu.Lock()
		content, ok := f.files[args[2]]
		f.mu.Unlock()
		if !ok {
			fmt.Fprintf(opts.Stderr, "tar: %s: Cannot stat: No such file or directory\n", args[2])
			return 2, nil
		}
		tw := tar.NewWriter(opts.Stdout)
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(args[2], "/"), Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			return 2, nil
		}
		_, _ = io.WriteString(tw, content)
		_ = tw.Close()
		return 0, nil
	}
	return 64, nil
}

// reportSizes writes every size from resize to out until in ends or the
// size is 1x1.
func reportSizes(in io.Reader, out io.Writer, resize <-chan runtime.TerminalSize) {
	eof := make(chan struct{})
	go func() {
		if in != nil {
			_, _ = io.Copy(io.Discard, in)
		}
		close(eof)
	}()
	for {
		select {
		case sz, ok := <-resize:
			if !ok {
				return
			}
			fmt.Fprintf(out, "%dx%d\n", sz.Width, sz.Height)
			if sz.Width == 1 && sz.Height == 1 {
				return
			}
		case <-eof:
			return
		}
	}
}

func (f *fakeRuntime) Attach(ctx context.Context, id string, opts runtime.AttachOptions) error {
	f.mu.Lock()
	c, ok := f.containers[id]
	running := ok && c.State == runtime.ContainerRunning
	f.attaches = append(f.attaches, id)
	f.mu.Unlock()
	if !running {
		return fmt.Errorf("container %s: %w", id, runtime.ErrFailedPrecondition)
	}
	f.started <- "attach:" + id
	if opts.Resize != nil {
		reportSizes(opts.Stdin, opts.Stdout, opts.Resize)
		return nil
	}
	if opts.Stderr != nil {
		_, _ = io.WriteString(opts.Stderr, "attached\n")
	}
	if opts.Stdin != nil && opts.Stdout != nil {
		r := bufio.NewReader(opts.Stdin)
		for ctx.Err() == nil {
			line, err := r.ReadString('\n')
			if line == "bye\n" || err != nil {
				return nil
			}
			_, _ = io.WriteString(opts.Stdout, "main:"+line)
		}
	}
	return ctx.Err()
}

// harness is a started server with its PKI.
type harness struct {
	srv     *kubeletapi.Server
	addr    string
	ca      *ca
	pods    *fakePods
	rt      *fakeRuntime
	client  *rest.Config // the API server's kubelet-client identity
	tlsConf *tls.Config  // same, as a tls.Config
}

type harnessOpt func(*kubeletapi.Config)

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	c := newCA(t, "cluster-ca")
	servingCert, servingKey := c.issue(t, "node-1", nil, true)
	pair, err := tls.X509KeyPair(servingCert, servingKey)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{ca: c, pods: &fakePods{pods: map[string]*fakePod{}}, rt: newFakeRuntime()}
	cfg := kubeletapi.Config{
		Addr: "127.0.0.1:0",
		TLS: &tls.Config{
			Certificates: []tls.Certificate{pair},
			ClientCAs:    c.pool(),
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		},
		Authorize:             kubeletapi.AllowCommonNames(apiserverCN),
		Runtime:               h.rt,
		Pods:                  h.pods,
		Logger:                slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
		StreamCreationTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.srv, err = kubeletapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	h.addr = h.srv.Addr().String()
	cert, key := c.issue(t, apiserverCN, []string{"system:masters"}, false)
	h.client = h.restConfig(cert, key)
	h.tlsConf = h.tlsConfig(t, cert, key)
	return h
}

func (h *harness) restConfig(cert, key []byte) *rest.Config {
	return &rest.Config{
		Host:            "https://" + h.addr,
		TLSClientConfig: rest.TLSClientConfig{CAData: h.ca.pem, CertData: cert, KeyData: key},
	}
}

func (h *harness) tlsConfig(t testing.TB, cert, key []byte) *tls.Config {
	cfg := &tls.Config{RootCAs: h.ca.pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		// Always present it, even when the server's acceptable CAs do not
		// include its issuer (Certificates would then send none).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return cfg
}

// httpClient is a client with the API server's identity.
func (h *harness) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: h.tlsConf}, Timeout: 30 * time.Second}
}

// get fetches path and returns status and body.
func (h *harness) get(t *testing.T, c *http.Client, path string) (int, string) {
	t.Helper()
	resp, err := c.Get("https://" + h.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// addPod registers pod ns/name with one running container per name (ID
// "name-ctr-1").
func (h *harness) addPod(ns, name string, uid types.UID, containers ...string) *fakePod {
	p := &fakePod{uid: uid, containers: map[string]*fakeContainer{}}
	for _, c := range containers {
		id := name + "-" + c + "-1"
		p.containers[c] = &fakeContainer{current: kubeletapi.ContainerRef{ID: id}}
		h.rt.add(id, runtime.ContainerRunning, "")
	}
	h.pods.mu.Lock()
	h.pods.pods[ns+"/"+name] = p
	h.pods.mu.Unlock()
	return p
}

// testWriter sends log lines to t.Log until the test's cleanups are done
// (goroutines may still log after that).
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: &sync.Mutex{}, done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}
