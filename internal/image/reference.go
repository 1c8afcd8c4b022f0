package image

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// Reference is a normalized image reference, as Docker and the kubelet understand
// them: "busybox" is docker.io/library/busybox:latest, "ghcr.io/x/y" is
// ghcr.io/x/y:latest, and a reference with both a tag and a digest keeps only the
// digest (the digest is what gets pulled). The zero Reference is not valid.
type Reference struct {
	named reference.Named
}

// ParseReference normalizes s. It returns an error wrapping ErrInvalidReference when
// s is not a valid reference (upper case in the repository name, an empty or
// malformed tag or digest, a bare 64-character hex image ID, ...).
func ParseReference(s string) (Reference, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return Reference{}, fmt.Errorf("%w: %q", ErrInvalidReference, s)
	}
	named, err := reference.ParseDockerRef(s)
	if err != nil {
		return Reference{}, fmt.Errorf("%w: %q: %v", ErrInvalidReference, s, err)
	}
	return Reference{named: named}, nil
}

// String is the full normalized form, e.g. "docker.io/library/busybox:1.36".
func (r Reference) String() string {
	if r.named == nil {
		return ""
	}
	return r.named.String()
}

// Familiar is the short form Docker prints, e.g. "busybox:1.36".
func (r Reference) Familiar() string {
	if r.named == nil {
		return ""
	}
	return reference.FamiliarString(r.named)
}

// Registry is the registry host (with port, if any), e.g. "docker.io".
func (r Reference) Registry() string { return reference.Domain(r.named) }

// Repository is the path within the registry, e.g. "library/busybox".
func (r Reference) Repository() string { return reference.Path(r.named) }

// Name is the registry and repository without tag or digest,
// e.g. "docker.io/library/busybox".
func (r Reference) Name() string { return r.named.Name() }

// Tag is the tag, or "" for a digest reference.
func (r Reference) Tag() string {
	if t, ok := r.named.(reference.Tagged); ok {
		return t.Tag()
	}
	return ""
}

// Digest is the manifest digest ("sha256:..."), or "" for a tag reference.
func (r Reference) Digest() string {
	if d, ok := r.named.(reference.Digested); ok {
		return d.Digest().String()
	}
	return ""
}

// identifier is what follows the repository: ":tag" or "@digest".
func (r Reference) identifier() string {
	if d := r.Digest(); d != "" {
		return "@" + d
	}
	return ":" + r.Tag()
}

// withRepository is r moved to another registry host and repository path (a mirror
// endpoint), keeping its tag or digest: "host:port/path:tag".
func (r Reference) withRepository(host, repo string) string {
	return host + "/" + repo + r.identifier()
}

// parseImageID reports whether s names an image by ID ("sha256:<hex>" or the bare
// 64-character hex), and returns it in the "sha256:<hex>" form.
func parseImageID(s string) (string, bool) {
	hex := strings.TrimPrefix(s, "sha256:")
	if !isSHA256Hex(hex) {
		return "", false
	}
	return "sha256:" + hex, true
}

// isSHA256Hex reports whether s is 64 lower-case hex digits.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
