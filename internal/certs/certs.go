// Package certs owns the cluster's PKI on disk: the certificate authority, the API
// server's serving certificate, the admin client credentials, the service-account
// signing key, the node join token and the admin kubeconfig.
//
// Everything is generated on first start and reused afterwards. Files are written
// atomically (temp file, fsync, rename) so a crash never leaves half a key behind.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Paths names every file this package manages below one directory.
type Paths struct {
	Dir string
}

// CACert is the cluster CA certificate.
func (p Paths) CACert() string { return filepath.Join(p.Dir, "ca.crt") }

// CAKey is the cluster CA key.
func (p Paths) CAKey() string { return filepath.Join(p.Dir, "ca.key") }

// ServingCert is the API server's TLS certificate.
func (p Paths) ServingCert() string { return filepath.Join(p.Dir, "serving.crt") }

// ServingKey is the API server's TLS key.
func (p Paths) ServingKey() string { return filepath.Join(p.Dir, "serving.key") }

// AdminCert is the admin client certificate (group system:masters).
func (p Paths) AdminCert() string { return filepath.Join(p.Dir, "admin.crt") }

// AdminKey is the admin client key.
func (p Paths) AdminKey() string { return filepath.Join(p.Dir, "admin.key") }

// ServiceAccountKey is the private key that signs service-account tokens.
func (p Paths) ServiceAccountKey() string { return filepath.Join(p.Dir, "service-account.key") }

// ServiceAccountPub is the public half of ServiceAccountKey.
func (p Paths) ServiceAccountPub() string { return filepath.Join(p.Dir, "service-account.pub") }

// ServingSANs are the names and addresses the serving certificate is valid for.
type ServingSANs struct {
	DNSNames []string
	IPs      []net.IP
}

// DefaultServingSANs returns upstream's SANs for an API server reachable as
// kubernetesServiceIP inside the cluster: localhost, the hostname, every address of
// this machine, and the kubernetes.default service names.
func DefaultServingSANs(kubernetesServiceIP net.IP) ServingSANs {
	sans := ServingSANs{
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	if kubernetesServiceIP != nil {
		sans.IPs = append(sans.IPs, kubernetesServiceIP)
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		sans.DNSNames = append(sans.DNSNames, h)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
				sans.IPs = append(sans.IPs, ipn.IP)
			}
		}
	}
	return sans
}

// Ensure makes sure every credential exists under p.Dir, creating what is missing.
// Existing files are reused untouched, so a restart keeps its identity.
func Ensure(p Paths, sans ServingSANs, now time.Time) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("create tls dir: %w", err)
	}
	caCert, caKey, err := ensureCA(p, now)
	if err != nil {
		return err
	}
	if err := ensureLeaf(p.ServingCert(), p.ServingKey(), caCert, caKey, now, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    sans.DNSNames,
		IPAddresses: dedupIPs(sans.IPs),
	}); err != nil {
		return err
	}
	if err := ensureLeaf(p.AdminCert(), p.AdminKey(), caCert, caKey, now, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	if err := ensureLeaf(p.KubeletClientCert(), p.KubeletClientKey(), caCert, caKey, now, &x509.Certificate{
		Subject:     pkix.Name{CommonName: KubeletClientCN, Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return err
	}
	return ensureServiceAccountKey(p)
}

// IssueClientCert signs a client certificate for user cn in groups orgs with the
// cluster CA and returns PEM-encoded certificate and key.
func IssueClientCert(p Paths, cn string, orgs []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	caCert, caKey, err := loadCA(p)
	if err != nil {
		return nil, nil, err
	}
	return signLeaf(caCert, caKey, now, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func dedupIPs(ips []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range ips {
		if !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out
}

func ensureCA(p Paths, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	if exists(p.CACert()) && exists(p.CAKey()) {
		return loadCA(p)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("peapod-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	// Key first: a CA cert without its key would be unusable after a crash.
	if err := WriteFileAtomic(p.CAKey(), keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := WriteFileAtomic(p.CACert(), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return loadCA(p)
}

func loadCA(p Paths) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(p.CACert())
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(p.CAKey())
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func ensureLeaf(certPath, keyPath string, ca *x509.Certificate, caKey crypto.Signer, now time.Time, tmpl *x509.Certificate) error {
	if exists(certPath) && exists(keyPath) {
		cert, err := readCert(certPath)
		if err == nil && coversSANs(cert, tmpl) && now.Before(cert.NotAfter.Add(-30*24*time.Hour)) {
			return nil
		}
	}
	certPEM, keyPEM, err := signLeaf(ca, caKey, now, tmpl)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(certPath, certPEM, 0o644)
}

// coversSANs reports whether cert already names every DNS name and IP of tmpl, so
// that a machine that gains an address gets a new serving certificate on restart.
func coversSANs(cert, tmpl *x509.Certificate) bool {
	for _, n := range tmpl.DNSNames {
		if !slices.Contains(cert.DNSNames, n) {
			return false
		}
	}
	for _, ip := range tmpl.IPAddresses {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func signLeaf(ca *x509.Certificate, caKey crypto.Signer, now time.Time, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	if certPEM, err = signPublicKey(ca, caKey, now, key.Public(), tmpl); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// signPublicKey signs a one-year leaf certificate for pub from tmpl.
func signPublicKey(ca *x509.Certificate, caKey crypto.Signer, now time.Time, pub any, tmpl *x509.Certificate) ([]byte, error) {
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.AddDate(1, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", tmpl.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func ensureServiceAccountKey(p Paths) error {
	if exists(p.ServiceAccountKey()) && exists(p.ServiceAccountPub()) {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("encode service-account public key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := WriteFileAtomic(p.ServiceAccountKey(), priv, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(p.ServiceAccountPub(), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// EnsureToken returns the node join token stored at path. A non-empty want is
// stored (replacing what was there); otherwise an existing token is reused, or a
// new random one is generated. The file is written with mode 0600.
func EnsureToken(path, want string) (string, error) {
	if want != "" {
		if cur, err := os.ReadFile(path); err == nil && string(trimNL(cur)) == want {
			return want, nil
		}
		return want, WriteFileAtomic(path, []byte(want+"\n"), 0o600)
	}
	if cur, err := os.ReadFile(path); err == nil && len(trimNL(cur)) > 0 {
		return string(trimNL(cur)), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read token: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	tok := hex.EncodeToString(b)
	return tok, WriteFileAtomic(path, []byte(tok+"\n"), 0o600)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return k, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// WriteFileAtomic writes data to path through a synced temporary file and a
// rename, so readers see either the old or the new content, never a torn one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) //nolint:errcheck // gone after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
