// Package pki is Hodei's internal certificate authority: an ECDSA P-256 CA
// that issues the certificates of servers, agents and clients, and the TLS
// configurations that use them.
//
// Every certificate names its holder twice: in the subject's common name,
// and in a URI SAN spiffe://hodei/<kind>/<name> (kind server, agent or
// client). The URI is what Hodei trusts: the embedded NATS server gives a
// connection presenting spiffe://hodei/agent/X the permissions of agent X.
//
// Files, in one directory: ca.crt and ca.key for the CA, NAME.crt and
// NAME.key for each certificate issued. Private keys are written 0600, and
// never overwritten.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kinds of certificates.
const (
	KindServer = "server" // TLS server of the API and NATS; also a client of an external NATS
	KindAgent  = "agent"  // a worker: client of NATS only
	KindClient = "client" // a person or tool calling the API
)

// TrustDomain is the authority of the URI SANs.
const TrustDomain = "hodei"

// Default validity periods.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	LeafValidity = 365 * 24 * time.Hour
)

// Errors.
var (
	ErrExists   = errors.New("already exists")
	ErrBadKind  = errors.New("unknown certificate kind")
	ErrBadName  = errors.New("invalid name")
	ErrNotFound = errors.New("not found")
)

// CA is a loaded certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	dir  string
}

// Paths of the CA's files in dir.
func caPaths(dir string) (crt, key string) {
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
}

// CertPaths are the files of the certificate NAME in dir.
func CertPaths(dir, name string) (crt, key string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// Init creates a new CA in dir, with the given common name. It refuses to
// overwrite an existing CA.
func Init(dir, commonName string) (*CA, error) {
	crtPath, keyPath := caPaths(dir)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("ca in %s: %w", dir, ErrExists)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca dir: %w", err)
	}
	if commonName == "" {
		commonName = "Hodei internal CA"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Hodei"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create ca certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writeKey(keyPath, key); err != nil {
		return nil, err
	}
	if err := writePEM(crtPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, dir: dir}, nil
}

// Load reads the CA in dir.
func Load(dir string) (*CA, error) {
	crtPath, keyPath := caPaths(dir)
	cert, err := ReadCert(crtPath)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", crtPath)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", keyPath, crtPath)
	}
	return &CA{Cert: cert, Key: key, dir: dir}, nil
}

// Request describes a certificate to issue.
type Request struct {
	Kind string // KindServer, KindAgent or KindClient
	Name string // the holder: a host or service name, an agent id, a user
	// DNS and IPs are subject alternative names (servers).
	DNS []string
	IPs []net.IP
	// Validity defaults to LeafValidity.
	Validity time.Duration
}

// Issued is a certificate and its private key, PEM-encoded.
type Issued struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// ValidName reports whether name can name a certificate holder: letters,
// digits, '-', '_' and '.', 1 to 128 of them, not starting with '.'.
func ValidName(name string) bool {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

// IdentityURI is the URI SAN of a holder.
func IdentityURI(kind, name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + kind + "/" + name}
}

// Identity returns the kind and name of a certificate's holder from its
// URI SAN; ok is false if it has none of Hodei's.
func Identity(cert *x509.Certificate) (kind, name string, ok bool) {
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != TrustDomain {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
		if len(parts) == 2 && parts[1] != "" {
			switch parts[0] {
			case KindServer, KindAgent, KindClient:
				return parts[0], parts[1], true
			}
		}
	}
	return "", "", false
}

// Issue signs a new certificate with a fresh P-256 key.
func (ca *CA) Issue(r Request) (Issued, error) {
	if !ValidName(r.Name) {
		return Issued{}, fmt.Errorf("%w %q: use letters, digits, '-', '_' and '.'", ErrBadName, r.Name)
	}
	var ext []x509.ExtKeyUsage
	switch r.Kind {
	case KindServer:
		// A server is also a client: of an external NATS cluster.
		ext = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case KindAgent, KindClient:
		ext = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if len(r.DNS) > 0 || len(r.IPs) > 0 {
			return Issued{}, fmt.Errorf("%s certificates are for clients: DNS and IP names are for servers", r.Kind)
		}
	default:
		return Issued{}, fmt.Errorf("%w %q: want server, agent or client", ErrBadKind, r.Kind)
	}
	validity := r.Validity
	if validity <= 0 {
		validity = LeafValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: r.Name, Organization: []string{"Hodei"}, OrganizationalUnit: []string{r.Kind}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           ext,
		BasicConstraintsValid: true,
		DNSNames:              r.DNS,
		IPAddresses:           r.IPs,
		URIs:                  []*url.URL{IdentityURI(r.Kind, r.Name)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Issued{}, fmt.Errorf("sign certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Issued{}, err
	}
	return Issued{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// IssueFiles issues a certificate and writes it as NAME.crt and NAME.key
// (0600) in dir. It refuses to overwrite a key.
func (ca *CA) IssueFiles(dir, name string, r Request) (Issued, error) {
	crtPath, keyPath := CertPaths(dir, name)
	if _, err := os.Stat(keyPath); err == nil {
		return Issued{}, fmt.Errorf("%s: %w", keyPath, ErrExists)
	}
	is, err := ca.Issue(r)
	if err != nil {
		return Issued{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Issued{}, err
	}
	if err := writeFile(keyPath, is.KeyPEM, 0o600); err != nil {
		return Issued{}, err
	}
	// The chain: the leaf, then the CA, so that peers that know only the
	// CA's certificate can verify it.
	chain := append(append([]byte(nil), is.CertPEM...), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...)
	if err := writeFile(crtPath, chain, 0o644); err != nil {
		return Issued{}, err
	}
	return is, nil
}

// CertPool returns a pool holding the CA certificate.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerTLS is the configuration of a TLS server with the certificate in
// certFile and keyFile. With clientCAFile, clients must present a
// certificate signed by that CA (mutual TLS).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{kp}}
	if clientCAFile != "" {
		pool, err := LoadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientTLS is the configuration of a TLS client that trusts the CA in
// caFile (the system roots if empty) and, with certFile and keyFile,
// presents that certificate.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("a client certificate needs both its certificate and its key file")
		}
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg, nil
}

// LoadPool reads PEM certificates into a pool.
func LoadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("ca file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// ReadCert reads the first certificate of a PEM file.
func ReadCert(file string) (*x509.Certificate, error) {
	b, err := readPEM(file, "certificate")
	if err != nil {
		return nil, err
	}
	if b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return x509.ParseCertificate(b.Bytes)
}

// readPEM reads the first PEM block of file, what it should hold (for the
// error when it has none); a missing file wraps ErrNotFound.
func readPEM(file, what string) (*pem.Block, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", file, ErrNotFound)
		}
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: no PEM %s", file, what)
	}
	return b, nil
}

func readKey(file string) (*ecdsa.PrivateKey, error) {
	b, err := readPEM(file, "key")
	if err != nil {
		return nil, err
	}
	switch b.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		if ek, ok := k.(*ecdsa.PrivateKey); ok {
			return ek, nil
		}
	}
	return nil, fmt.Errorf("%s: not an ECDSA private key", file)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

// writeFile creates path exclusively with mode: an existing file is an
// error, and the mode holds from creation (no window with a wider one).
func writeFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}
