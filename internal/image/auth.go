package image

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
)

// Credentials are one registry login.
type Credentials struct {
	Username string
	Password string
	// IdentityToken is an OAuth2 refresh token, used instead of a password.
	IdentityToken string
	// RegistryToken is a bearer token sent as is.
	RegistryToken string
}

func (c Credentials) empty() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == "" && c.RegistryToken == ""
}

// Keyring holds registry credentials by host, as the kubelet builds from a pod's
// imagePullSecrets: every secret's entries, in order. A nil *Keyring has no
// credentials (anonymous pulls).
type Keyring struct {
	entries []keyringEntry
}

type keyringEntry struct {
	host  string // lower-case host[:port], may contain "*" globs per label
	path  string // repository path prefix, "" for the whole host
	order int
	creds Credentials
}

// dockerAuth is one entry of a docker config "auths" map.
type dockerAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	Email         string `json:"email,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// ParseDockerConfigJSON parses the data of a kubernetes.io/dockerconfigjson secret
// (its .dockerconfigjson key: {"auths": {"HOST": {"auth": "base64(user:password)"}}},
// or username and password fields) or of a legacy kubernetes.io/dockercfg secret
// (the same map without "auths"). Keys may be a host[:port], a URL such as
// "https://index.docker.io/v1/", a host with a repository path prefix, or a glob
// such as "*.example.com". Errors wrap ErrInvalidPullSecret.
func ParseDockerConfigJSON(data []byte) (*Keyring, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPullSecret, err)
	}
	auths := map[string]dockerAuth{}
	src := data
	if raw, ok := top["auths"]; ok {
		src = raw
	}
	if err := json.Unmarshal(src, &auths); err != nil {
		return nil, fmt.Errorf("%w: auths: %v", ErrInvalidPullSecret, err)
	}
	keys := make([]string, 0, len(auths))
	for k := range auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	k := &Keyring{}
	for _, key := range keys {
		a := auths[key]
		creds, err := a.credentials()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalidPullSecret, key, err)
		}
		if err := k.add(key, creds); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidPullSecret, err)
		}
	}
	return k, nil
}

func (a dockerAuth) credentials() (Credentials, error) {
	c := Credentials{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	if a.Auth != "" {
		user, pass, err := decodeAuth(a.Auth)
		if err != nil {
			return Credentials{}, err
		}
		c.Username, c.Password = user, pass
	}
	return c, nil
}

// decodeAuth decodes a docker config "auth" field: base64 of "user:password".
func decodeAuth(s string) (string, string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", "", fmt.Errorf("auth is not base64: %v", err)
	}
	user, pass, ok := strings.Cut(string(b), ":")
	if !ok {
		return "", "", fmt.Errorf("auth is not base64 of user:password")
	}
	return user, pass, nil
}

// Add appends other's credentials after k's (the next secret of a pod).
func (k *Keyring) Add(other *Keyring) {
	if other == nil {
		return
	}
	for _, e := range other.entries {
		e.order = len(k.entries)
		k.entries = append(k.entries, e)
	}
}

// AddCredentials adds credentials for a registry key (a host[:port], URL, or glob
// as in ParseDockerConfigJSON).
func (k *Keyring) AddCredentials(key string, c Credentials) error {
	if err := k.add(key, c); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidPullSecret, err)
	}
	return nil
}

func (k *Keyring) add(key string, c Credentials) error {
	host, p, err := parseRegistryKey(key)
	if err != nil {
		return err
	}
	if c.empty() {
		return nil
	}
	k.entries = append(k.entries, keyringEntry{host: host, path: p, order: len(k.entries), creds: c})
	return nil
}

// parseRegistryKey splits a docker config key into a normalized host and repository
// path prefix, as the kubelet does ("https://index.docker.io/v1/" is docker.io).
func parseRegistryKey(key string) (host, p string, err error) {
	s := strings.TrimSpace(key)
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("registry key %q is not a host or URL", key)
	}
	host = canonicalHost(strings.ToLower(u.Host))
	p = strings.Trim(u.Path, "/")
	for _, v := range []string{"v1", "v2"} {
		if p == v || strings.HasPrefix(p, v+"/") {
			p = strings.TrimPrefix(strings.TrimPrefix(p, v), "/")
		}
	}
	return host, p, nil
}

// canonicalHost maps Docker Hub's aliases to "docker.io".
func canonicalHost(host string) string {
	switch host {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return "docker.io"
	}
	return host
}

// lookup returns the credentials that apply to repo on host, most specific first
// (exact host before globs, longer path prefixes first, then in order of addition).
func (k *Keyring) lookup(host, repo string) []Credentials {
	if k == nil {
		return nil
	}
	host = canonicalHost(strings.ToLower(host))
	var matched []keyringEntry
	for _, e := range k.entries {
		if !hostMatches(e.host, host) {
			continue
		}
		if e.path != "" && repo != e.path && !strings.HasPrefix(repo, e.path+"/") {
			continue
		}
		matched = append(matched, e)
	}
	sort.SliceStable(matched, func(i, j int) bool {
		gi, gj := strings.Contains(matched[i].host, "*"), strings.Contains(matched[j].host, "*")
		if gi != gj {
			return !gi
		}
		if len(matched[i].path) != len(matched[j].path) {
			return len(matched[i].path) > len(matched[j].path)
		}
		return matched[i].order < matched[j].order
	})
	out := make([]Credentials, 0, len(matched))
	for _, e := range matched {
		out = append(out, e.creds)
	}
	return out
}

// hostMatches matches a host[:port] against a pattern whose labels may be globs
// ("*.example.com" matches "a.example.com" but not "example.com"); ports must be
// equal.
func hostMatches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	pHost, pPort := splitHostPort(pattern)
	hHost, hPort := splitHostPort(host)
	if pPort != hPort {
		return false
	}
	pl, hl := strings.Split(pHost, "."), strings.Split(hHost, ".")
	if len(pl) != len(hl) {
		return false
	}
	for i := range pl {
		if ok, err := path.Match(pl[i], hl[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func splitHostPort(s string) (string, string) {
	if strings.HasPrefix(s, "[") { // [::1]:5000
		if i := strings.LastIndex(s, "]"); i > 0 {
			return s[:i+1], strings.TrimPrefix(s[i+1:], ":")
		}
	}
	if i := strings.LastIndex(s, ":"); i >= 0 && !strings.Contains(s[:i], ":") {
		return s[:i], s[i+1:]
	}
	return s, ""
}
