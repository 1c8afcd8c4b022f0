package certs

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WriteKubeconfig writes a kubeconfig at path (mode 0600) that reaches server,
// trusts the cluster CA of p and authenticates with the given PEM client
// credentials. The contents are embedded so the file can be copied elsewhere.
func WriteKubeconfig(path, server string, p Paths, certPEM, keyPEM []byte) error {
	ca, err := os.ReadFile(p.CACert())
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["peapod"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["peapod"] = &clientcmdapi.Context{Cluster: "peapod", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "peapod"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	return WriteFileAtomic(path, data, 0o600)
}

// WriteAdminKubeconfig writes the admin kubeconfig for server at path.
func WriteAdminKubeconfig(path, server string, p Paths) error {
	certPEM, err := os.ReadFile(p.AdminCert())
	if err != nil {
		return fmt.Errorf("read admin certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.AdminKey())
	if err != nil {
		return fmt.Errorf("read admin key: %w", err)
	}
	return WriteKubeconfig(path, server, p, certPEM, keyPEM)
}
