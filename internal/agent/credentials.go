package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/rest"

	"github.com/peapod-dev/peapod/internal/certs"
	"github.com/peapod-dev/peapod/internal/join"
)

// identity is a node's credentials on disk: DIR/{ca.crt, client.crt,
// client.key, serving.crt, serving.key}.
type identity struct{ dir string }

func (i identity) path(name string) string { return filepath.Join(i.dir, name) }

// ensureIdentity reuses the node's credentials when they exist, are signed
// for this node name and cover its addresses; otherwise it makes new keys and
// has them signed (through the join endpoint, or in-process by sign).
func ensureIdentity(ctx context.Context, dir string, o *Options, now time.Time) (identity, error) {
	id := identity{dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return id, err
	}
	if id.valid(o, now) {
		return id, nil
	}
	clientKey, clientCSR, err := newCSR(&x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + o.NodeName}})
	if err != nil {
		return id, err
	}
	servingKey, servingCSR, err := newCSR(&x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: o.NodeName},
		DNSNames:    slices.Compact([]string{o.NodeName, o.Hostname, "localhost"}),
		IPAddresses: append(slices.Clone(o.NodeIPs), net.IPv4(127, 0, 0, 1)),
	})
	if err != nil {
		return id, err
	}
	req := certs.NodeRequest{NodeName: o.NodeName, ClientCSR: clientCSR, ServingCSR: servingCSR}
	var creds *certs.NodeCredentials
	if o.Sign != nil {
		creds, err = o.Sign(req)
	} else {
		creds, err = join.Join(ctx, o.Server, o.Token, req)
	}
	if err != nil {
		return id, err
	}
	// Keys before certificates: a certificate without its key is useless
	// after a crash, a key without one is simply replaced.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{"client.key", clientKey, 0o600}, {"serving.key", servingKey, 0o600},
		{"ca.crt", creds.CA, 0o644}, {"client.crt", creds.ClientCert, 0o644}, {"serving.crt", creds.ServingCert, 0o644},
	} {
		if err := certs.WriteFileAtomic(id.path(f.name), f.data, f.mode); err != nil {
			return id, err
		}
	}
	return id, nil
}

func (i identity) valid(o *Options, now time.Time) bool {
	for _, n := range []string{"ca.crt", "client.crt", "client.key", "serving.crt", "serving.key"} {
		if _, err := os.Stat(i.path(n)); err != nil {
			return false
		}
	}
	client, err := readCert(i.path("client.crt"))
	if err != nil || client.Subject.CommonName != "system:node:"+o.NodeName || now.After(client.NotAfter.Add(-24*time.Hour)) {
		return false
	}
	serving, err := readCert(i.path("serving.crt"))
	if err != nil || now.After(serving.NotAfter.Add(-24*time.Hour)) {
		return false
	}
	for _, ip := range o.NodeIPs {
		if !slices.ContainsFunc(serving.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

// restConfig reaches server as the node.
func (i identity) restConfig(server string) *rest.Config {
	return &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   i.path("ca.crt"),
			CertFile: i.path("client.crt"),
			KeyFile:  i.path("client.key"),
		},
		QPS:   50,
		Burst: 100,
	}
}

// servingTLS is the kubelet API's TLS: the node's serving certificate, and
// client certificates signed by the cluster CA required.
func (i identity) servingTLS() (*tls.Config, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(i.path("serving.crt"), i.path("serving.key"))
	if err != nil {
		return nil, nil, err
	}
	caPEM, err := os.ReadFile(i.path("ca.crt"))
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("agent: no CA certificate in " + i.path("ca.crt"))
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, pool, nil
}

func newCSR(tmpl *x509.CertificateRequest) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate request: %w", err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM certificate in " + path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
