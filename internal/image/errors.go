package image

import "errors"

// Sentinel errors. Every error the package returns that falls into one of these
// classes wraps the sentinel, so callers test with errors.Is; the wrapping error
// carries the detail (which reference, which digest, which registry said what).
var (
	// ErrInvalidReference is returned when a string is not a valid image reference
	// (upper case in the repository, a bad tag, a malformed digest, a bare image ID
	// where a name is needed). The agent maps it to the InvalidImageName reason.
	ErrInvalidReference = errors.New("invalid image reference")

	// ErrNotFound is returned when a reference or image ID is not in the store, and by
	// Pull when the registry has no such repository, tag or manifest.
	ErrNotFound = errors.New("image not found")

	// ErrUnauthorized is returned by Pull when the registry refuses the credentials
	// it was given, or refuses an anonymous pull (HTTP 401 or 403).
	ErrUnauthorized = errors.New("registry authorization failed")

	// ErrNoMatchingPlatform is returned when an image index has no manifest for the
	// store's platform, or an image is built for another operating system.
	ErrNoMatchingPlatform = errors.New("no image for this platform")

	// ErrInvalidArchive is returned by Load when the stream is neither an OCI image
	// layout archive nor a `docker save` tarball, when it names a blob it does not
	// contain, or when it contains no named image.
	ErrInvalidArchive = errors.New("invalid image archive")

	// ErrInvalidLayer is returned when a layer cannot be unpacked safely: an entry
	// escapes the layer directory (through "..", an absolute or escaping symbolic
	// link, or a hard link to a path outside it), or has an unsupported type.
	ErrInvalidLayer = errors.New("invalid image layer")

	// ErrCorrupt is returned when content does not match its digest (a blob, or a
	// layer's uncompressed diff ID), or stored metadata cannot be parsed.
	ErrCorrupt = errors.New("image content corrupt")

	// ErrUnsupported is returned for content the store does not handle: schema 1
	// manifests, digest algorithms other than sha256, unknown media types.
	ErrUnsupported = errors.New("unsupported image content")

	// ErrInvalidConfig is returned when a registries configuration is malformed
	// (YAML syntax, an endpoint that is not an http(s) URL, a rewrite that is not a
	// regular expression, an auth field that is not base64 "user:password").
	ErrInvalidConfig = errors.New("invalid registries configuration")

	// ErrInvalidPullSecret is returned when pull-secret data is not a valid
	// .dockerconfigjson (or legacy .dockercfg) document.
	ErrInvalidPullSecret = errors.New("invalid image pull secret")

	// ErrInvalidHolder is returned by Acquire and Release when a holder name is not
	// usable as a file name (empty, too long, containing "/" or starting with ".").
	ErrInvalidHolder = errors.New("invalid holder name")
)
