package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/peapod-dev/peapod/internal/image"
)

func TestParseRegistries(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		yaml string
		want error
	}{
		{"empty", "", nil},
		{"k3s example", `
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
      - "http://127.0.0.1:5000/v2/hub"
    rewrite:
      "^rancher/(.*)": "mirrorproject/rancher-images/$1"
  "*":
    endpoint: ["mirror.example.com"]
configs:
  "mirror.example.com:5000":
    auth:
      username: xxx
      password: yyy
    tls:
      insecure_skip_verify: true
  registry.internal:5000:
    plain_http: true
    auth:
      auth: dXNlcjpwYXNz
      identitytoken: tok
disable-default-registry-endpoint: true
`, nil},
		{"unknown fields are ignored", "mirrors: {}\nsomething_new: 1\n", nil},
		{"bad yaml", "mirrors: [", image.ErrInvalidConfig},
		{"wrong type", "mirrors: [a, b]", image.ErrInvalidConfig},
		{"ftp endpoint", "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n", image.ErrInvalidConfig},
		{"endpoint without host", "mirrors:\n  docker.io:\n    endpoint: [\"http://\"]\n", image.ErrInvalidConfig},
		{"endpoint with credentials", "mirrors:\n  docker.io:\n    endpoint: [\"https://u:p@x\"]\n", image.ErrInvalidConfig},
		{"bad rewrite", "mirrors:\n  docker.io:\n    rewrite:\n      \"(\": x\n", image.ErrInvalidConfig},
		{"auth not base64", "configs:\n  x:\n    auth:\n      auth: '!!!'\n", image.ErrInvalidConfig},
		{"auth without colon", "configs:\n  x:\n    auth:\n      auth: dXNlcg==\n", image.ErrInvalidConfig},
		{"missing CA file", "configs:\n  x:\n    tls:\n      ca_file: /nonexistent/ca.pem\n", image.ErrInvalidConfig},
		{"CA file without certificates", "configs:\n  x:\n    tls:\n      ca_file: " + ca + "\n", image.ErrInvalidConfig},
		{"cert without key", "configs:\n  x:\n    tls:\n      cert_file: " + ca + "\n", image.ErrInvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := image.ParseRegistries([]byte(tc.yaml))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("ParseRegistries = %v, want %v", err, tc.want)
			}
			if err == nil && c == nil {
				t.Fatal("nil config")
			}
		})
	}
}

func TestLoadRegistriesFile(t *testing.T) {
	dir := t.TempDir()
	c, err := image.LoadRegistriesFile(filepath.Join(dir, "missing.yaml"))
	if err != nil || c == nil || len(c.Mirrors) != 0 {
		t.Fatalf("missing file = %+v, %v, want an empty configuration", c, err)
	}
	p := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(p, []byte("mirrors:\n  docker.io:\n    endpoint: [\"http://127.0.0.1:5000\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = image.LoadRegistriesFile(p)
	if err != nil || len(c.Mirrors["docker.io"].Endpoints) != 1 {
		t.Fatalf("LoadRegistriesFile = %+v, %v", c, err)
	}
	if err := os.WriteFile(p, []byte("mirrors: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := image.LoadRegistriesFile(p); !errors.Is(err, image.ErrInvalidConfig) {
		t.Fatalf("bad file = %v, want ErrInvalidConfig", err)
	}
}
