package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	k8sapiv1 "k8s.io/kubernetes/pkg/apis/core/v1"
)

// Upstream kubelet's defaults (streamingConnectionIdleTimeout and the CRI
// streaming server's stream creation timeout).
const (
	DefaultStreamIdleTimeout     = 4 * time.Hour
	DefaultStreamCreationTimeout = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Addr is the TCP address to listen on (host:port; port 0 picks one).
	Addr string
	// TLS is the serving configuration: the node's serving certificate
	// (Certificates or GetCertificate) and the CA pool that signs the API
	// server's client certificate (ClientCAs) with ClientAuth
	// RequireAndVerifyClientCert (VerifyClientCertIfGiven also works:
	// requests without a verified certificate then get 401). Required; it
	// is cloned, and HTTP/2 is not offered (the streaming protocols upgrade
	// HTTP/1.1 connections).
	TLS *tls.Config
	// Authorize decides whether the verified client certificate may use the
	// API; a refusal is 403. Only the API server's kubelet-client identity
	// should pass (the nodes' own client certificates are signed by the
	// same CA). Required; see AllowCommonNames.
	Authorize func(cert *x509.Certificate) bool
	// Runtime and Pods are required.
	Runtime Runtime
	Pods    Pods
	// Logger receives the server's log (nil: discarded).
	Logger *slog.Logger
	// StreamIdleTimeout closes exec, attach and port-forward connections
	// idle for that long (DefaultStreamIdleTimeout when 0).
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds how long the server waits for a client
	// to create its SPDY streams (DefaultStreamCreationTimeout when 0).
	StreamCreationTimeout time.Duration
}

// AllowCommonNames returns an Authorize function that accepts client
// certificates whose subject common name (the Kubernetes user name) is one
// of names.
func AllowCommonNames(names ...string) func(*x509.Certificate) bool {
	return func(cert *x509.Certificate) bool {
		for _, n := range names {
			if cert.Subject.CommonName == n {
				return true
			}
		}
		return false
	}
}

// Server is the node agent's kubelet-style API.
type Server struct {
	cfg    Config
	log    *slog.Logger
	tls    *tls.Config
	params runtime.ParameterCodec
	srv    *http.Server

	baseCtx context.Context
	cancel  context.CancelFunc

	mu       sync.Mutex
	ln       net.Listener
	closing  bool
	streams  map[net.Conn]struct{} // connections handed to a streaming protocol
	handlers sync.WaitGroup
	served   chan struct{} // closed when Serve returned
}

type connKey struct{}

// New checks cfg and builds a Server; Start makes it listen.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.TLS == nil:
		return nil, errors.New("kubeletapi: TLS configuration is required")
	case cfg.TLS.ClientCAs == nil:
		return nil, errors.New("kubeletapi: TLS.ClientCAs is required (client certificates authenticate every request)")
	case cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert && cfg.TLS.ClientAuth != tls.VerifyClientCertIfGiven:
		return nil, fmt.Errorf("kubeletapi: TLS.ClientAuth must verify client certificates, not %v", cfg.TLS.ClientAuth)
	case len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil:
		return nil, errors.New("kubeletapi: TLS has no serving certificate")
	case cfg.Authorize == nil:
		return nil, errors.New("kubeletapi: Authorize is required")
	case cfg.Runtime == nil || cfg.Pods == nil:
		return nil, errors.New("kubeletapi: Runtime and Pods are required")
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if cfg.StreamCreationTimeout <= 0 {
		cfg.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The kubelet decodes log options with the legacy scheme's v1
	// conversions from url.Values and defaulting; a scheme of our own with
	// the same registrations does the same without the global one.
	scheme := runtime.NewScheme()
	if err := k8sapiv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubeletapi: scheme: %w", err)
	}
	tlsCfg := cfg.TLS.Clone()
	tlsCfg.NextProtos = []string{"http/1.1"}

	s := &Server{
		cfg:     cfg,
		log:     log,
		tls:     tlsCfg,
		params:  runtime.NewParameterCodec(scheme),
		streams: map[net.Conn]struct{}{},
		served:  make(chan struct{}),
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /containerLogs/{podNamespace}/{podID}/{containerName}", s.containerLogs)
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{podNamespace}/{podID}/{containerName}", s.streaming(s.exec))
		mux.HandleFunc(m+" /exec/{podNamespace}/{podID}/{uid}/{containerName}", s.streaming(s.exec))
		mux.HandleFunc(m+" /attach/{podNamespace}/{podID}/{containerName}", s.streaming(s.attach))
		mux.HandleFunc(m+" /attach/{podNamespace}/{podID}/{uid}/{containerName}", s.streaming(s.attach))
		mux.HandleFunc(m+" /portForward/{podNamespace}/{podID}", s.streaming(s.portForward))
		mux.HandleFunc(m+" /portForward/{podNamespace}/{podID}/{uid}", s.streaming(s.portForward))
	}
	return s.guard(mux)
}

// guard authenticates and authorizes every request (upstream kubelet's
// InstallAuthFilter wording) and counts it for Shutdown.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			writeError(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		cert := r.TLS.VerifiedChains[0][0]
		if !s.cfg.Authorize(cert) {
			verb := map[string]string{"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[r.Method]
			subresource := "proxy"
			s.log.Info("forbidden", "user", cert.Subject.CommonName, "verb", verb, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, fmt.Sprintf("Forbidden (user=%s, verb=%s, resource=%s, subresource(s)=%v)\n",
				cert.Subject.CommonName, verb, "nodes", []string{subresource}))
			return
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			writeError(w, http.StatusServiceUnavailable, "the node agent is shutting down")
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		next.ServeHTTP(w, r)
	})
}

// streaming registers the request's connection while h runs, so that
// Shutdown can close it once h hijacked it for a streaming protocol.
func (s *Server) streaming(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(net.Conn)
		if c != nil {
			s.mu.Lock()
			s.streams[c] = struct{}{}
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				delete(s.streams, c)
				s.mu.Unlock()
			}()
		}
		h(w, r)
	}
}

// Start listens on Config.Addr and serves in the background; it returns once
// the listener is bound (Addr then tells where).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil || s.closing {
		return errors.New("kubeletapi: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("kubeletapi: listen on %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	s.log.Info("serving the node API", "addr", ln.Addr().String())
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(tls.NewListener(ln, s.tls)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("node API server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address (nil before Start).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops listening, ends every request (following logs, exec,
// attach and port-forward sessions are cut, execs killed) and waits for the
// handlers to return or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	started := s.ln != nil
	s.mu.Unlock()
	s.cancel()
	if !started {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	s.mu.Lock()
	for c := range s.streams {
		_ = c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		<-s.served
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		_ = s.srv.Close()
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("kubeletapi: shutdown: %w", err)
	}
	return nil
}

// writeError writes a plain-text error as upstream kubelet's handlers do
// (the API server relays the body as the error's message, so no newline is
// added).
func writeError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}
