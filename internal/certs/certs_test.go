package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func TestEnsureCreatesThenReuses(t *testing.T) {
	p := Paths{Dir: filepath.Join(t.TempDir(), "tls")}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sans := DefaultServingSANs(net.ParseIP("10.43.0.1"))
	if err := Ensure(p, sans, now); err != nil {
		t.Fatal(err)
	}
	files := []string{p.CACert(), p.CAKey(), p.ServingCert(), p.ServingKey(), p.AdminCert(), p.AdminKey(), p.ServiceAccountKey(), p.ServiceAccountPub()}
	before := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		before[f] = b
	}
	for _, key := range []string{p.CAKey(), p.ServingKey(), p.AdminKey(), p.ServiceAccountKey()} {
		st, _ := os.Stat(key)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", key, st.Mode().Perm())
		}
	}
	if err := Ensure(p, sans, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		after, _ := os.ReadFile(f)
		if !bytes.Equal(before[f], after) {
			t.Errorf("%s was regenerated on the second start", f)
		}
	}
}

func TestServingCertificateNames(t *testing.T) {
	p := Paths{Dir: t.TempDir()}
	if err := Ensure(p, DefaultServingSANs(net.ParseIP("10.43.0.1")), time.Now()); err != nil {
		t.Fatal(err)
	}
	cert := mustCert(t, p.ServingCert())
	for _, name := range []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("serving certificate not valid for %s: %v", name, err)
		}
	}
	for _, ip := range []string{"127.0.0.1", "10.43.0.1"} {
		if err := cert.VerifyHostname(ip); err != nil {
			t.Errorf("serving certificate not valid for %s: %v", ip, err)
		}
	}
	ca := mustCert(t, p.CACert())
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Errorf("serving certificate does not chain to the CA: %v", err)
	}
	admin := mustCert(t, p.AdminCert())
	if admin.Subject.CommonName != "admin" || len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin subject = %v, want CN=admin O=system:masters", admin.Subject)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate is not a client certificate of the CA: %v", err)
	}
}

func TestNewAddressGetsNewServingCert(t *testing.T) {
	p := Paths{Dir: t.TempDir()}
	if err := Ensure(p, ServingSANs{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := Ensure(p, ServingSANs{IPs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("192.0.2.7")}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := mustCert(t, p.ServingCert()).VerifyHostname("192.0.2.7"); err != nil {
		t.Errorf("serving certificate was not reissued for a new address: %v", err)
	}
}

func TestEnsureToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	tok, err := EnsureToken(path, "")
	if err != nil || len(tok) < 32 {
		t.Fatalf("generated token %q, %v", tok, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token mode %v, want 0600", st.Mode().Perm())
	}
	again, _ := EnsureToken(path, "")
	if again != tok {
		t.Errorf("token changed on reuse: %q -> %q", tok, again)
	}
	given, _ := EnsureToken(path, "my-secret")
	stored, _ := os.ReadFile(path)
	if given != "my-secret" || string(stored) != "my-secret\n" {
		t.Errorf("given token not stored: %q, file %q", given, stored)
	}
}

func TestWriteAdminKubeconfig(t *testing.T) {
	dir := t.TempDir()
	p := Paths{Dir: dir}
	if err := Ensure(p, ServingSANs{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	if err := WriteAdminKubeconfig(path, "https://127.0.0.1:6443", p); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600", st.Mode().Perm())
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || len(cfg.CAData) == 0 || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 {
		t.Errorf("kubeconfig incomplete: host %q, ca %d, cert %d, key %d bytes", cfg.Host, len(cfg.CAData), len(cfg.CertData), len(cfg.KeyData))
	}
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
