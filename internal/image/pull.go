package image

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Pull fetches ref from a Docker/OCI registry, stores it with its layers unpacked
// and returns it. The registries configuration decides where the request goes
// (mirror endpoints in order, with their rewrites, then the registry itself);
// HTTPS is used except for endpoints configured as plain HTTP and for localhost
// and loopback addresses. At each endpoint the keyring's credentials for that host
// (a pod's pull secrets; nil for none) are tried in turn, else the registries
// configuration's auth for it, else an anonymous pull. Multi-platform images
// resolve to the store's platform.
//
// Errors wrap ErrInvalidReference (ref is not a reference), ErrNotFound (no such
// repository, tag or manifest), ErrUnauthorized (credentials refused or missing),
// ErrNoMatchingPlatform or ErrCorrupt; with several endpoints the error carries
// each endpoint's failure and errors.Is matches any of them.
func (s *Store) Pull(ctx context.Context, ref string, keyring *Keyring) (Image, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return Image{}, err
	}
	unlock, err := s.lockContent()
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	start := time.Now()
	var errs endpointErrors
	for _, ep := range s.resolver.endpoints(r) {
		img, err := s.pullFrom(ctx, r, ep, keyring)
		if err == nil {
			s.log.Info("image pulled", "ref", r.String(), "endpoint", ep.String(), "digest", img.Digest, "took", time.Since(start))
			return img, nil
		}
		if ctx.Err() != nil {
			return Image{}, fmt.Errorf("pull %s: %w", r, ctx.Err())
		}
		s.log.Info("image pull from endpoint failed", "ref", r.String(), "endpoint", ep.String(), "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	if len(errs) == 0 {
		return Image{}, fmt.Errorf("pull %s: %w: no endpoint (the default endpoint is disabled)", r, ErrNotFound)
	}
	return Image{}, fmt.Errorf("pull %s: %w", r, errs)
}

// endpointErrors are the failures at each endpoint tried; errors.Is and
// errors.As look at all of them.
type endpointErrors []error

func (e endpointErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e endpointErrors) Unwrap() []error { return e }

func (s *Store) pullFrom(ctx context.Context, r Reference, ep endpoint, keyring *Keyring) (Image, error) {
	tr, err := transportFor(s.transport, ep)
	if err != nil {
		return Image{}, err
	}
	var nopts []name.Option
	if ep.plainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	nref, err := name.ParseReference(r.withRepository(ep.host, ep.repo), nopts...)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %v", ErrInvalidReference, err)
	}
	creds := keyring.lookup(ep.host, ep.repo)
	if len(creds) == 0 && ep.config.hasCreds {
		creds = []Credentials{ep.config.creds}
	}
	auths := make([]authn.Authenticator, 0, len(creds))
	for _, c := range creds {
		auths = append(auths, authn.FromConfig(authn.AuthConfig{
			Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken,
		}))
	}
	if len(auths) == 0 {
		auths = append(auths, authn.Anonymous)
	}
	for i, a := range auths {
		img, err := s.fetch(ctx, r, nref, a, tr)
		if err == nil || !errors.Is(err, ErrUnauthorized) || i == len(auths)-1 {
			return img, err
		}
	}
	panic("unreachable")
}

func (s *Store) fetch(ctx context.Context, r Reference, nref name.Reference, a authn.Authenticator, tr http.RoundTripper) (Image, error) {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(a),
		remote.WithTransport(tr),
		remote.WithPlatform(s.platform),
		remote.WithUserAgent("peapod"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
	desc, err := remote.Get(nref, opts...)
	if err != nil {
		return Image{}, classify(err)
	}
	var img v1.Image
	switch desc.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		idx, err := desc.ImageIndex()
		if err != nil {
			return Image{}, classify(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return Image{}, classify(err)
		}
		sel, err := selectPlatform(im.Manifests, s.platform)
		if err != nil {
			return Image{}, err
		}
		if img, err = idx.Image(sel.Digest); err != nil {
			return Image{}, classify(err)
		}
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return Image{}, fmt.Errorf("%w: schema 1 manifest", ErrUnsupported)
	default:
		if img, err = desc.Image(); err != nil {
			return Image{}, classify(err)
		}
	}
	digest, err := s.writeImage(ctx, img)
	if err != nil {
		return Image{}, classify(err)
	}
	images, err := s.commit(ctx, digest, []Reference{r}, desc.Digest)
	if err != nil {
		return Image{}, err
	}
	return images[0], nil
}

// classify wraps registry errors in the package's sentinels.
func classify(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	switch te.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %v", ErrUnauthorized, err)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
			return fmt.Errorf("%w: %v", ErrUnauthorized, err)
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		}
	}
	return err
}
