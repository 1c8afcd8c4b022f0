package apiserver

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// countingAuth answers with a fixed user and counts calls.
type countingAuth struct {
	calls int
	user  user.Info
}

func (c *countingAuth) AuthenticateRequest(*http.Request) (*authenticator.Response, bool, error) {
	c.calls++
	if c.user == nil {
		return nil, false, nil
	}
	return &authenticator.Response{User: c.user}, true, nil
}

func certRequest(cn string, orgs []string, notAfter time.Time, header http.Header) *http.Request {
	cert := &x509.Certificate{Raw: []byte(cn + "-der"), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter}
	r := &http.Request{Header: http.Header{}, TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}
	for k, v := range header {
		r.Header[k] = v
	}
	return r
}

func TestCachedCertAuth(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{"system:masters", "system:authenticated"}}
	for _, tc := range []struct {
		name      string
		user      user.Info
		cn        string
		orgs      []string
		notAfter  time.Time
		header    http.Header
		wantCalls int // of inner, for three requests
	}{
		{"certificate user cached", admin, "admin", []string{"system:masters"}, now.Add(time.Hour), nil, 1},
		{"bearer token never cached", admin, "admin", []string{"system:masters"}, now.Add(time.Hour),
			http.Header{"Authorization": {"Bearer x"}}, 3},
		{"websocket token never cached", admin, "admin", []string{"system:masters"}, now.Add(time.Hour),
			http.Header{"Sec-Websocket-Protocol": {"base64url.bearer.authorization.k8s.io.eA"}}, 3},
		{"user not named by the certificate", admin, "someone-else", nil, now.Add(time.Hour), nil, 3},
		{"group the user lacks", admin, "admin", []string{"system:nodes"}, now.Add(time.Hour), nil, 3},
		{"rejected request", nil, "admin", nil, now.Add(time.Hour), nil, 3},
		{"expired certificate", admin, "admin", []string{"system:masters"}, now.Add(-time.Second), nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &countingAuth{user: tc.user}
			a := newCachedCertAuth(inner, func() time.Time { return now })
			for range 3 {
				resp, ok, err := a.AuthenticateRequest(certRequest(tc.cn, tc.orgs, tc.notAfter, tc.header))
				if err != nil || ok != (tc.user != nil) {
					t.Fatalf("AuthenticateRequest = %v, %v, %v", resp, ok, err)
				}
				if ok && resp.User.GetName() != tc.user.GetName() {
					t.Fatalf("user %q, want %q", resp.User.GetName(), tc.user.GetName())
				}
			}
			if inner.calls != tc.wantCalls {
				t.Errorf("inner authenticator called %d times, want %d", inner.calls, tc.wantCalls)
			}
		})
	}
}

// A different certificate is verified on its own, and a cached one is
// verified again after the TTL.
func TestCachedCertAuthKeyAndTTL(t *testing.T) {
	now := time.Now()
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{"system:masters"}}
	inner := &countingAuth{user: admin}
	a := newCachedCertAuth(inner, func() time.Time { return now })
	r1 := certRequest("admin", []string{"system:masters"}, now.Add(time.Hour), nil)
	r2 := certRequest("admin", []string{"system:masters"}, now.Add(time.Hour), nil)
	r2.TLS.PeerCertificates[0].Raw = []byte("another certificate")
	for _, r := range []*http.Request{r1, r2, r1, r2} {
		if _, ok, err := a.AuthenticateRequest(r); !ok || err != nil {
			t.Fatalf("not authenticated: %v", err)
		}
	}
	if inner.calls != 2 {
		t.Fatalf("inner called %d times for two certificates, want 2", inner.calls)
	}
	// The cache's own clock decides expiry; an entry whose TTL is the
	// certificate's remaining validity (1 ms here) is gone shortly after.
	short := certRequest("admin", []string{"system:masters"}, time.Now().Add(time.Millisecond), nil)
	short.TLS.PeerCertificates[0].Raw = []byte("short-lived")
	a.now = time.Now
	if _, ok, _ := a.AuthenticateRequest(short); !ok {
		t.Fatal("short-lived certificate not authenticated")
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, found := a.cache.Get("short-lived"); !found {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("entry outlived its certificate")
}
