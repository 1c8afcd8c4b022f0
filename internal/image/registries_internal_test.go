package image

import (
	"fmt"
	"strings"
	"testing"
)

func TestEndpoints(t *testing.T) {
	cfg, err := ParseRegistries([]byte(`
mirrors:
  docker.io:
    endpoint: ["https://hub-mirror.example.com", "http://127.0.0.1:5000/v2/hub", "https://hub-mirror.example.com"]
    rewrite:
      "^library/(.*)": "lib/$1"
      "^z/(.*)": "never/$1"
  quay.io:
    endpoint: ["https://quay-mirror.example.com/"]
  "*":
    endpoint: ["https://catch-all.example.com:8443"]
configs:
  registry.internal:5000:
    plain_http: true
  hub-mirror.example.com:
    auth: {username: u, password: p}
`))
	if err != nil {
		t.Fatal(err)
	}
	strict := *cfg
	strict.DisableDefaultEndpoint = true
	for _, tc := range []struct {
		cfg  *RegistriesConfig
		ref  string
		want string
	}{
		{cfg, "busybox:1", "https://hub-mirror.example.com/lib/busybox, http://127.0.0.1:5000/hub/lib/busybox, https://docker.io/library/busybox"},
		{cfg, "user/app", "https://hub-mirror.example.com/user/app, http://127.0.0.1:5000/hub/user/app, https://docker.io/user/app"},
		{cfg, "quay.io/org/app", "https://quay-mirror.example.com/org/app, https://quay.io/org/app"},
		{cfg, "ghcr.io/org/app", "https://catch-all.example.com:8443/org/app, https://ghcr.io/org/app"},
		{&strict, "busybox", "https://hub-mirror.example.com/lib/busybox, http://127.0.0.1:5000/hub/lib/busybox"},
		{&strict, "ghcr.io/org/app", "https://catch-all.example.com:8443/org/app"},
		{&RegistriesConfig{}, "busybox", "https://docker.io/library/busybox"},
		{&RegistriesConfig{DisableDefaultEndpoint: true}, "busybox", "https://docker.io/library/busybox"},
		{&RegistriesConfig{}, "localhost:5000/app", "http://localhost:5000/app"},
		{&RegistriesConfig{}, "127.0.0.1:5000/app", "http://127.0.0.1:5000/app"},
		{&RegistriesConfig{}, "[::1]:5000/app", "http://[::1]:5000/app"},
		{&RegistriesConfig{}, "10.0.0.1:5000/app", "https://10.0.0.1:5000/app"},
		{cfg, "registry.internal:5000/app", "https://catch-all.example.com:8443/app, http://registry.internal:5000/app"},
	} {
		r, err := ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		res, err := compileRegistries(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range res.endpoints(r) {
			got = append(got, e.String())
		}
		if strings.Join(got, ", ") != tc.want {
			t.Errorf("endpoints(%s) =\n  %s\nwant\n  %s", tc.ref, strings.Join(got, ", "), tc.want)
		}
	}
	res, _ := compileRegistries(cfg)
	r, _ := ParseReference("busybox")
	if eps := res.endpoints(r); !eps[0].config.hasCreds || eps[0].config.creds.Username != "u" || eps[1].config.hasCreds {
		t.Errorf("per-host auth: %+v", eps)
	}
}

func TestKeyringLookup(t *testing.T) {
	secret := func(auths string) *Keyring {
		k, err := ParseDockerConfigJSON([]byte(`{"auths":{` + auths + `}}`))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k := secret(`
		"https://index.docker.io/v1/": {"auth": "aHViOmh1Yg=="},
		"registry.example.com": {"username": "plain", "password": "p"},
		"registry.example.com/team": {"username": "team", "password": "t"},
		"*.wild.example.com": {"username": "wild", "password": "w"},
		"ports.example.com:5000": {"username": "port", "password": "x"},
		"empty.example.com": {}`)
	k.Add(secret(`"registry.example.com": {"username": "second", "password": "s"}`))
	legacy, err := ParseDockerConfigJSON([]byte(`{"legacy.example.com": {"auth": "bGVnOmFjeQ=="}}`))
	if err != nil {
		t.Fatal(err)
	}
	k.Add(legacy)
	for _, tc := range []struct {
		host, repo string
		want       string
	}{
		{"docker.io", "library/busybox", "hub"},
		{"index.docker.io", "library/busybox", "hub"},
		{"registry.example.com", "team/app", "team plain second"},
		{"registry.example.com", "teamx/app", "plain second"},
		{"a.wild.example.com", "x", "wild"},
		{"wild.example.com", "x", ""},
		{"a.b.wild.example.com", "x", ""},
		{"ports.example.com:5000", "x", "port"},
		{"ports.example.com", "x", ""},
		{"empty.example.com", "x", ""},
		{"legacy.example.com", "x", "leg"},
		{"other.example.com", "x", ""},
	} {
		var got []string
		for _, c := range k.lookup(tc.host, tc.repo) {
			got = append(got, c.Username)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("lookup(%s, %s) = %v, want %q", tc.host, tc.repo, got, tc.want)
		}
	}
	var nilKeyring *Keyring
	if got := nilKeyring.lookup("docker.io", "x"); got != nil {
		t.Errorf("nil keyring lookup = %v", got)
	}
	if c := k.lookup("docker.io", "x"); c[0].Password != "hub" {
		t.Errorf("decoded auth: %+v", c[0])
	}
	for _, bad := range []string{`not json`, `[]`, `{"auths": []}`, `{"auths": {"x": {"auth": "***"}}}`, `{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}`, `{"auths": {"http://": {"username": "u"}}}`} {
		if _, err := ParseDockerConfigJSON([]byte(bad)); err == nil || !strings.Contains(fmt.Sprint(err), ErrInvalidPullSecret.Error()) {
			t.Errorf("ParseDockerConfigJSON(%s) = %v, want ErrInvalidPullSecret", bad, err)
		}
	}
}
