package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// KubeletClientCert and KubeletClientKey are the API server's client
// credentials towards node agents (pods/log, exec, attach, port-forward).
func (p Paths) KubeletClientCert() string { return filepath.Join(p.Dir, "kubelet-client.crt") }

// KubeletClientKey is the key of KubeletClientCert.
func (p Paths) KubeletClientKey() string { return filepath.Join(p.Dir, "kubelet-client.key") }

// KubeletClientCN is the user name of the API server's kubelet client
// certificate; node agents accept it (and only CA-signed clients) on their API.
const KubeletClientCN = "kube-apiserver-kubelet-client"

// NodeRequest is what a joining node asks the CA to sign: PEM certificate
// requests for its client identity and for its serving certificate.
type NodeRequest struct {
	NodeName   string
	ClientCSR  []byte
	ServingCSR []byte
}

// NodeCredentials are a node's signed certificates and the CA that signed them
// (all PEM).
type NodeCredentials struct {
	CA          []byte
	ClientCert  []byte
	ServingCert []byte
}

// SignNode signs a node's certificate requests with the cluster CA: the client
// certificate names user system:node:NAME in group system:nodes whatever the
// request asks; the serving certificate keeps the request's DNS names and IP
// addresses (the node's addresses) for server authentication only.
func SignNode(p Paths, req NodeRequest, now time.Time) (*NodeCredentials, error) {
	if req.NodeName == "" {
		return nil, errors.New("node name is required")
	}
	caCert, caKey, err := loadCA(p)
	if err != nil {
		return nil, err
	}
	client, err := parseCSR(req.ClientCSR)
	if err != nil {
		return nil, fmt.Errorf("client certificate request: %w", err)
	}
	serving, err := parseCSR(req.ServingCSR)
	if err != nil {
		return nil, fmt.Errorf("serving certificate request: %w", err)
	}
	clientPEM, err := signPublicKey(caCert, caKey, now, client.PublicKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + req.NodeName, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	servingPEM, err := signPublicKey(caCert, caKey, now, serving.PublicKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: req.NodeName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    serving.DNSNames,
		IPAddresses: dedupIPs(serving.IPAddresses),
	})
	if err != nil {
		return nil, err
	}
	return &NodeCredentials{
		CA:          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}),
		ClientCert:  clientPEM,
		ServingCert: servingPEM,
	}, nil
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, err
	}
	return csr, nil
}
