package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/churnwatch/churnwatch/services/platform/embedded"
)

// PKI is a throw-away certificate authority with one server certificate
// (127.0.0.1, ::1, localhost) and one client certificate, as PEM files.
type PKI struct {
	Dir                   string
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	pool                  *x509.CertPool
}

// NewPKI writes a CA, a server and a client certificate into a temporary
// directory of t.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p, err := WritePKI(t.TempDir())
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	return p
}

// WritePKI is NewPKI into dir, for callers without a testing.TB.
func WritePKI(dir string) (*PKI, error) {
	p := &PKI{Dir: dir, CAFile: filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem")}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "churnwatch test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	if err := writePEM(p.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, certFile, keyFile string) error {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyFile, "PRIVATE KEY", kder)
	}
	if err := leaf(2, "churnwatch test server", x509.ExtKeyUsageServerAuth, p.ServerCert, p.ServerKey); err != nil {
		return nil, err
	}
	if err := leaf(3, "churnwatch test client", x509.ExtKeyUsageClientAuth, p.ClientCert, p.ClientKey); err != nil {
		return nil, err
	}
	return p, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ClientTLS is a client configuration trusting the CA, presenting the
// client certificate when withCert.
func (p *PKI) ClientTLS(t testing.TB, withCert bool) *tls.Config {
	t.Helper()
	tc := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if withCert {
		c, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc
}

// SecureRedis is a redis-server speaking TLS only (certificate from a
// fresh PKI) with one ACL user, the default user disabled.
type SecureRedis struct {
	*embedded.Redis
	PKI          *PKI
	User         string
	Password     string
	PasswordFile string
}

// StartSecureRedis starts a SecureRedis for the test, stopped at cleanup.
func StartSecureRedis(t testing.TB) *SecureRedis {
	t.Helper()
	pki := NewPKI(t)
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		t.Fatal(err)
	}
	s := &SecureRedis{PKI: pki, User: "churnwatch", Password: hex.EncodeToString(buf), PasswordFile: filepath.Join(pki.Dir, "redis.password")}
	if err := os.WriteFile(s.PasswordFile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := embedded.StartSecureRedis(t.TempDir(), 0, embedded.RedisSecurity{
		CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CAFile, User: s.User, Password: s.Password})
	if err != nil {
		t.Fatalf("secure redis: %v", err)
	}
	t.Cleanup(r.Close)
	s.Redis = r
	return s
}

// Env is the churnwatch configuration that reaches s.
func (s *SecureRedis) Env() map[string]string {
	return map[string]string{
		"CHURNWATCH_REDIS_ADDR": "rediss://" + s.Addr, "CHURNWATCH_REDIS_USERNAME": s.User,
		"CHURNWATCH_REDIS_PASSWORD_FILE": s.PasswordFile, "CHURNWATCH_REDIS_TLS_CA": s.PKI.CAFile,
	}
}
