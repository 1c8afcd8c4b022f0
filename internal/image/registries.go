package image

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// RegistriesConfig says where pulls go, in the format of k3s' registries.yaml, so
// that air-gapped users can send every pull to their own registry:
//
//	mirrors:
//	  docker.io:                       # pulls of docker.io/... try these first
//	    endpoint: ["http://127.0.0.1:5000", "https://mirror.example.com/v2/hub"]
//	    rewrite:                       # applied to the repository path at mirrors only
//	      "^library/(.*)": "mirrored/$1"
//	  "*":                             # every registry without its own entry
//	    endpoint: ["https://cache.example.com"]
//	configs:
//	  mirror.example.com:              # per endpoint host
//	    auth: {username: u, password: p}   # or auth: base64(u:p), identitytoken
//	    tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, insecure_skip_verify: false}
//	  registry.internal:5000:
//	    plain_http: true               # peapod extension: talk HTTP to this host
//	disable-default-registry-endpoint: true
//
// Mirror endpoints are tried in order, then the registry itself (its "default
// endpoint": https://HOST, or index.docker.io for docker.io), without rewrites, as
// containerd and k3s do. With disable-default-registry-endpoint (k3s' flag of that
// name) registries that have a mirror entry are never contacted directly. An
// endpoint URL's scheme picks HTTPS or plain HTTP; a path ("https://h/v2/p" or
// "https://h/p") is a repository prefix at that endpoint. localhost, 127.0.0.0/8 and
// ::1 are always spoken to in plain HTTP.
type RegistriesConfig struct {
	Mirrors                map[string]Mirror         `json:"mirrors,omitempty"`
	Configs                map[string]RegistryConfig `json:"configs,omitempty"`
	DisableDefaultEndpoint bool                      `json:"disable-default-registry-endpoint,omitempty"`
}

// Mirror lists the endpoints that serve one registry's images.
type Mirror struct {
	Endpoints []string          `json:"endpoint,omitempty"`
	Rewrites  map[string]string `json:"rewrite,omitempty"`
}

// RegistryConfig is how to talk to one endpoint host.
type RegistryConfig struct {
	Auth      *RegistryAuth `json:"auth,omitempty"`
	TLS       *RegistryTLS  `json:"tls,omitempty"`
	PlainHTTP bool          `json:"plain_http,omitempty"`
}

// RegistryAuth is a login for one endpoint host; Auth is base64 of "user:password".
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// RegistryTLS configures HTTPS to one endpoint host.
type RegistryTLS struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// ParseRegistries parses registries.yaml content and validates it (see Validate).
// Errors wrap ErrInvalidConfig.
func ParseRegistries(data []byte) (*RegistriesConfig, error) {
	c := &RegistriesConfig{}
	if err := yaml.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadRegistriesFile reads and parses a registries.yaml file. A missing file is an
// empty configuration (every registry contacted directly).
func LoadRegistriesFile(path string) (*RegistriesConfig, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &RegistriesConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registries configuration: %w", err)
	}
	c, err := ParseRegistries(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Validate checks endpoints, rewrites, auth and TLS files. Errors wrap
// ErrInvalidConfig.
func (c *RegistriesConfig) Validate() error {
	_, err := compileRegistries(c)
	return err
}

// resolver is a compiled RegistriesConfig.
type resolver struct {
	mirrors        map[string]compiledMirror
	configs        map[string]compiledConfig
	disableDefault bool
}

type compiledMirror struct {
	endpoints []mirrorEndpoint
	rewrites  []rewrite
}

type mirrorEndpoint struct {
	host      string
	plainHTTP bool
	prefix    string
}

type rewrite struct {
	re   *regexp.Regexp
	repl string
}

type compiledConfig struct {
	creds     Credentials
	hasCreds  bool
	plainHTTP bool
	tls       *tls.Config
}

func compileRegistries(c *RegistriesConfig) (*resolver, error) {
	r := &resolver{mirrors: map[string]compiledMirror{}, configs: map[string]compiledConfig{}}
	if c == nil {
		return r, nil
	}
	r.disableDefault = c.DisableDefaultEndpoint
	for reg, m := range c.Mirrors {
		var cm compiledMirror
		for _, ep := range m.Endpoints {
			me, err := parseEndpoint(ep)
			if err != nil {
				return nil, fmt.Errorf("%w: mirrors.%s: %v", ErrInvalidConfig, reg, err)
			}
			cm.endpoints = append(cm.endpoints, me)
		}
		pats := make([]string, 0, len(m.Rewrites))
		for p := range m.Rewrites {
			pats = append(pats, p)
		}
		sort.Strings(pats)
		for _, p := range pats {
			re, err := regexp.Compile(p)
			if err != nil {
				return nil, fmt.Errorf("%w: mirrors.%s.rewrite %q: %v", ErrInvalidConfig, reg, p, err)
			}
			cm.rewrites = append(cm.rewrites, rewrite{re: re, repl: m.Rewrites[p]})
		}
		r.mirrors[canonicalHost(strings.ToLower(reg))] = cm
	}
	for host, rc := range c.Configs {
		cc := compiledConfig{plainHTTP: rc.PlainHTTP}
		if a := rc.Auth; a != nil {
			cc.creds = Credentials{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
			if a.Auth != "" {
				u, p, err := decodeAuth(a.Auth)
				if err != nil {
					return nil, fmt.Errorf("%w: configs.%s.auth: %v", ErrInvalidConfig, host, err)
				}
				cc.creds.Username, cc.creds.Password = u, p
			}
			cc.hasCreds = !cc.creds.empty()
		}
		if t := rc.TLS; t != nil {
			tc, err := t.config()
			if err != nil {
				return nil, fmt.Errorf("%w: configs.%s.tls: %v", ErrInvalidConfig, host, err)
			}
			cc.tls = tc
		}
		key := strings.ToLower(host)
		if u, err := url.Parse(key); err == nil && u.Host != "" {
			key = u.Host
		}
		r.configs[canonicalHost(key)] = cc
	}
	return r, nil
}

func parseEndpoint(s string) (mirrorEndpoint, error) {
	raw := s
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return mirrorEndpoint{}, fmt.Errorf("endpoint %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return mirrorEndpoint{}, fmt.Errorf("endpoint %q: scheme must be http or https", raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return mirrorEndpoint{}, fmt.Errorf("endpoint %q: want http(s)://host[:port][/path]", raw)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix == "v2" {
		prefix = ""
	}
	prefix = strings.TrimPrefix(prefix, "v2/")
	return mirrorEndpoint{host: strings.ToLower(u.Host), plainHTTP: u.Scheme == "http", prefix: prefix}, nil
}

func (t *RegistryTLS) config() (*tls.Config, error) {
	tc := &tls.Config{InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user asked for it
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// endpoint is one place to try a pull from.
type endpoint struct {
	host      string // host[:port] to contact
	plainHTTP bool
	repo      string // repository path at this endpoint
	mirror    bool
	config    compiledConfig
}

func (e endpoint) String() string {
	scheme := "https"
	if e.plainHTTP {
		scheme = "http"
	}
	return scheme + "://" + e.host + "/" + e.repo
}

// endpoints lists, in order, where a pull of ref goes.
func (r *resolver) endpoints(ref Reference) []endpoint {
	registry := canonicalHost(ref.Registry())
	m, hasMirror := r.mirrors[registry]
	if !hasMirror {
		m, hasMirror = r.mirrors["*"]
	}
	var out []endpoint
	seen := map[string]bool{}
	add := func(e endpoint) {
		key := e.host + "/" + e.repo
		if seen[key] {
			return
		}
		seen[key] = true
		e.config = r.configs[canonicalHost(e.host)]
		e.plainHTTP = e.plainHTTP || e.config.plainHTTP || isLoopbackHost(e.host)
		out = append(out, e)
	}
	if hasMirror {
		repo := ref.Repository()
		for _, rw := range m.rewrites {
			if rw.re.MatchString(repo) {
				repo = rw.re.ReplaceAllString(repo, rw.repl)
				break
			}
		}
		for _, me := range m.endpoints {
			p := repo
			if me.prefix != "" {
				p = me.prefix + "/" + repo
			}
			add(endpoint{host: me.host, plainHTTP: me.plainHTTP, repo: p, mirror: true})
		}
	}
	if !hasMirror || !r.disableDefault {
		add(endpoint{host: ref.Registry(), repo: ref.Repository()})
	}
	return out
}

// isLoopbackHost reports whether host[:port] is localhost or a loopback address.
func isLoopbackHost(hostport string) bool {
	h, _ := splitHostPort(hostport)
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// transportFor returns base, with the endpoint's TLS configuration when it has one.
func transportFor(base http.RoundTripper, e endpoint) (http.RoundTripper, error) {
	if e.config.tls == nil {
		return base, nil
	}
	t, ok := base.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("%w: TLS settings for %s need an *http.Transport", ErrInvalidConfig, e.host)
	}
	t = t.Clone()
	t.TLSClientConfig = e.config.tls.Clone()
	return t, nil
}
