package openimworker

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
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// connectsTo says whether Connect with these servers and security reaches a server that
// answers a request, within a few seconds.
func connectsTo(t *testing.T, servers []string, security Security) bool {
	t.Helper()
	nc, err := Connect("security-test", servers, security, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if nc.IsConnected() {
			return nc.Flush() == nil
		}
		if nc.IsClosed() {
			return false
		}
	}
	return false
}

func TestUserPasswordAndTokenInTheURL(t *testing.T) {
	port := freePort(t)
	server := start(t, baseEnv(), requireEnv(t, "NATS_SERVER_BIN"), "-a", "127.0.0.1", "-p", fmt.Sprint(port), "--user", "bob", "--pass", "p@ss/w")
	server.waitFor(t, "Server is ready")
	url := func(userinfo string) []string {
		servers, err := ParseServers(fmt.Sprintf("nats://%s@127.0.0.1:%d", userinfo, port))
		if err != nil {
			t.Fatal(err)
		}
		return servers
	}
	if !connectsTo(t, url("bob:p%40ss%2Fw"), Security{}) {
		t.Fatal("the right password, percent-encoded, did not connect")
	}
	if connectsTo(t, url("bob:wrong"), Security{}) {
		t.Fatal("a wrong password connected")
	}

	port = freePort(t)
	server = start(t, baseEnv(), requireEnv(t, "NATS_SERVER_BIN"), "-a", "127.0.0.1", "-p", fmt.Sprint(port), "--auth", "s3cr3t-token")
	server.waitFor(t, "Server is ready")
	if !connectsTo(t, url("s3cr3t-token"), Security{}) {
		t.Fatal("the token in the URL did not connect")
	}
	if !connectsTo(t, []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}, Security{Token: "s3cr3t-token"}) {
		t.Fatal("Security.Token did not connect")
	}
}

// writePEM writes one PEM block to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTLSWithACAAndAClientCertificate: a server that requires client certificates (verify)
// accepts the worker with WORKER_NATS_TLS_CA, _CERT and _KEY, and refuses it without them.
func TestTLSWithACAAndAClientCertificate(t *testing.T) {
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	caKey := newKey()
	caTemplate := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kit test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key := newKey()
		template := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	serverCert, serverKey := issue("server", 2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := issue("client", 3, x509.ExtKeyUsageClientAuth)

	port := freePort(t)
	server := start(t, baseEnv(), requireEnv(t, "NATS_SERVER_BIN"), "-a", "127.0.0.1", "-p", fmt.Sprint(port),
		"--tlscert", serverCert, "--tlskey", serverKey, "--tlscacert", caFile, "--tlsverify")
	server.waitFor(t, "Server is ready")
	servers := []string{fmt.Sprintf("tls://127.0.0.1:%d", port)}
	security := Security{TLSCA: caFile, TLSCert: clientCert, TLSKey: clientKey}
	if problems := security.Check(); len(problems) != 0 {
		t.Fatal(problems)
	}
	if !connectsTo(t, servers, security) {
		t.Fatal("the client certificate did not connect")
	}
	if connectsTo(t, servers, Security{TLSCA: caFile}) {
		t.Fatal("connected without a client certificate to a server that verifies them")
	}
	if problems := (Security{TLSCert: clientCert}).Check(); len(problems) != 1 {
		t.Fatalf("a certificate without its key: %v", problems)
	}
}

// TestNkeySeedFile: a server that knows the user's public nkey accepts the worker with the
// seed file of WORKER_NATS_NKEY.
func TestNkeySeedFile(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	public, _ := user.PublicKey()
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "user.nk")
	config := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte(fmt.Sprintf("authorization { users = [ { nkey: %s } ] }\n", public)), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	server := start(t, baseEnv(), requireEnv(t, "NATS_SERVER_BIN"), "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-c", config)
	server.waitFor(t, "Server is ready")
	servers := []string{fmt.Sprintf("nats://127.0.0.1:%d", port)}
	if !connectsTo(t, servers, Security{NkeyFile: seedFile}) {
		t.Fatal("the nkey seed file did not connect")
	}
	if connectsTo(t, servers, Security{}) {
		t.Fatal("connected without the nkey")
	}
}
