package embedded

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSFiles are the PEM files a client of a TLS cluster needs: the CA that
// signed the members' certificates, and a client certificate and key
// signed by it (the agent's --etcd-ca, --etcd-cert, --etcd-key).
type TLSFiles struct {
	CA, Cert, Key string
}

// serverTLS are the members' files.
type serverTLS struct {
	ca, cert, key string
}

// makeTLS writes a fresh CA, a server certificate for 127.0.0.1 and a
// client certificate into dir.
func makeTLS(dir string) (serverTLS, TLSFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return serverTLS{}, TLSFiles{}, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return serverTLS{}, TLSFiles{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reconciler embedded etcd CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return serverTLS{}, TLSFiles{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return serverTLS{}, TLSFiles{}, err
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := writePEM(caFile, "CERTIFICATE", caDER); err != nil {
		return serverTLS{}, TLSFiles{}, err
	}
	leaf := func(name string, serial int64, usage []x509.ExtKeyUsage) (string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: usage, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return "", "", err
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", "", err
		}
		cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := writePEM(cert, "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		return cert, keyFile, writePEM(keyFile, "EC PRIVATE KEY", kder)
	}
	// etcd's gateway dials its own members with the server certificate:
	// it needs client authentication too.
	sc, sk, err := leaf("server", 2, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	if err != nil {
		return serverTLS{}, TLSFiles{}, fmt.Errorf("server certificate: %w", err)
	}
	cc, ck, err := leaf("client", 3, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	if err != nil {
		return serverTLS{}, TLSFiles{}, fmt.Errorf("client certificate: %w", err)
	}
	return serverTLS{ca: caFile, cert: sc, key: sk}, TLSFiles{CA: caFile, Cert: cc, Key: ck}, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
