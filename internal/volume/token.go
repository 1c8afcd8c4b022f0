package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
)

// maxTokenAge is the age at which a token is renewed whatever its lifetime
// (the kubelet's token manager's maxTTL).
const maxTokenAge = 24 * time.Hour

// cachedToken is an issued token and when it was received.
type cachedToken struct {
	tr       *authenticationv1.TokenRequest
	received time.Time
}

// serviceAccountToken returns the token for a projected serviceAccountToken
// source of pod: the cached one while it is fresh, else a new one from the
// Source bound to the pod. A renewal that fails keeps the old token until it
// expires (then it is an error), as the kubelet's token manager.
func (m *Manager) serviceAccountToken(ctx context.Context, st *podState, pod *v1.Pod, tp *v1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	var auds []string
	if tp.Audience != "" {
		auds = []string{tp.Audience}
	}
	req := &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         auds,
			ExpirationSeconds: tp.ExpirationSeconds,
			BoundObjectRef: &authenticationv1.BoundObjectReference{
				APIVersion: "v1",
				Kind:       "Pod",
				Name:       pod.Name,
				UID:        pod.UID,
			},
		},
	}
	var exp int64
	if tp.ExpirationSeconds != nil {
		exp = *tp.ExpirationSeconds
	}
	key := fmt.Sprintf("%q/%q/%#v/%#v", sa, pod.Namespace, auds, exp)

	cached, ok := st.tokens[key]
	if ok && !m.tokenNeedsRenewal(cached) {
		return cached.tr.Status.Token, nil
	}
	tr, err := m.src.CreateToken(ctx, pod.Namespace, sa, req)
	if err == nil && (tr == nil || tr.Status.Token == "") {
		err = errors.New("the token request returned no token")
	}
	if err != nil {
		switch {
		case !ok:
			return "", fmt.Errorf("failed to fetch token: %w", err)
		case m.clock.Now().After(cached.tr.Status.ExpirationTimestamp.Time):
			return "", fmt.Errorf("token %s expired and refresh failed: %w", key, err)
		default:
			m.log.Error("couldn't renew a service account token, keeping the current one", "pod", pod.Namespace+"/"+pod.Name, "cacheKey", key, "err", err)
			return cached.tr.Status.Token, nil
		}
	}
	st.tokens[key] = &cachedToken{tr: tr, received: m.clock.Now()}
	if ok {
		m.log.Debug("service account token renewed", "pod", pod.Namespace+"/"+pod.Name, "expires", tr.Status.ExpirationTimestamp.Time)
	}
	return tr.Status.Token, nil
}

// tokenNeedsRenewal reports whether the token is older than 80% of its
// lifetime or than 24 hours. The lifetime is the response's
// expirationSeconds (the server may grant another than was asked) or, when
// it has none, the time from receipt to expiry.
func (m *Manager) tokenNeedsRenewal(c *cachedToken) bool {
	now := m.clock.Now()
	expiry := c.tr.Status.ExpirationTimestamp.Time
	issued := c.received
	if s := c.tr.Spec.ExpirationSeconds; s != nil {
		issued = expiry.Add(-time.Duration(*s) * time.Second)
	}
	if now.After(issued.Add(maxTokenAge)) {
		return true
	}
	ttl := expiry.Sub(issued)
	return now.After(expiry.Add(-ttl / 5))
}
