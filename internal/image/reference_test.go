package image_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/peapod-dev/peapod/internal/image"
)

func TestParseReference(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, want, registry, repo, tag, dig, familiar string
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest", registry: "docker.io", repo: "library/busybox", tag: "latest", familiar: "busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36", registry: "docker.io", repo: "library/busybox", tag: "1.36", familiar: "busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest", registry: "docker.io", repo: "library/busybox", tag: "latest"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest", registry: "docker.io", repo: "library/busybox", tag: "latest"},
		{in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1", registry: "docker.io", repo: "library/busybox", tag: "1"},
		{in: "user/app:v2", want: "docker.io/user/app:v2", registry: "docker.io", repo: "user/app", tag: "v2", familiar: "user/app:v2"},
		{in: "ghcr.io/org/app", want: "ghcr.io/org/app:latest", registry: "ghcr.io", repo: "org/app", tag: "latest", familiar: "ghcr.io/org/app:latest"},
		{in: "localhost:5000/app:1", want: "localhost:5000/app:1", registry: "localhost:5000", repo: "app", tag: "1"},
		{in: "127.0.0.1:5000/a/b/c:x", want: "127.0.0.1:5000/a/b/c:x", registry: "127.0.0.1:5000", repo: "a/b/c", tag: "x"},
		{in: "[::1]:5000/app:1", want: "[::1]:5000/app:1", registry: "[::1]:5000", repo: "app", tag: "1"},
		{in: "busybox@" + digest, want: "docker.io/library/busybox@" + digest, registry: "docker.io", repo: "library/busybox", dig: digest},
		// A tag and a digest: the digest wins, as in the kubelet and containerd.
		{in: "busybox:1.36@" + digest, want: "docker.io/library/busybox@" + digest, registry: "docker.io", repo: "library/busybox", dig: digest},
	} {
		r, err := image.ParseReference(tc.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", tc.in, err)
			continue
		}
		if r.String() != tc.want || r.Registry() != tc.registry || r.Repository() != tc.repo || r.Tag() != tc.tag || r.Digest() != tc.dig {
			t.Errorf("ParseReference(%q) = %s (registry %q repo %q tag %q digest %q), want %s (%q %q %q %q)",
				tc.in, r, r.Registry(), r.Repository(), r.Tag(), r.Digest(), tc.want, tc.registry, tc.repo, tc.tag, tc.dig)
		}
		if tc.familiar != "" && r.Familiar() != tc.familiar {
			t.Errorf("Familiar(%q) = %q, want %q", tc.in, r.Familiar(), tc.familiar)
		}
		if r.Name()+":"+r.Tag() != tc.want && r.Name()+"@"+r.Digest() != tc.want {
			t.Errorf("Name(%q) = %q", tc.in, r.Name())
		}
	}
	for _, bad := range []string{
		"", " ", "busybox ", "Busybox", "busybox:", "busybox:-x", ":latest", "busybox@sha256:abc",
		"busybox@md5:" + strings.Repeat("a", 32), strings.Repeat("a", 64), "a//b", "http://docker.io/busybox",
		"busybox:" + strings.Repeat("t", 129), "docker.io/Upper/case:1",
	} {
		if r, err := image.ParseReference(bad); !errors.Is(err, image.ErrInvalidReference) {
			t.Errorf("ParseReference(%q) = %v, %v, want ErrInvalidReference", bad, r, err)
		}
	}
}
