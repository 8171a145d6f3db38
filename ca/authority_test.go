package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoadPassphrase(t *testing.T) {
	t.Parallel()
	pass := []byte("right")
	p, _ := newCA(t, InitOptions{Passphrase: pass})
	tests := []struct {
		name    string
		pass    []byte
		wantErr error
	}{
		{"right", pass, nil},
		{"wrong", []byte("wrong"), ErrBadPassphrase},
		{"missing", nil, ErrBadPassphrase},
		{"empty", []byte{}, ErrBadPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Load(LoadOptions{Dir: p.Dir, Passphrase: tt.pass})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), p.IntermediateKey) {
					t.Errorf("error %q does not name %s", err, p.IntermediateKey)
				}
				return
			}
			signLeaf(t, a, "ok.example.net")
		})
	}
}

func TestLoadUnencryptedIgnoresPassphrase(t *testing.T) {
	t.Parallel()
	p, _ := newCA(t, InitOptions{})
	if _, err := Load(LoadOptions{Dir: p.Dir, Passphrase: []byte("unused")}); err != nil {
		t.Fatalf("Load of a plain key with a passphrase: %v", err)
	}
}

func TestLoadGarbage(t *testing.T) {
	t.Parallel()
	otherP, _ := newCA(t, InitOptions{})
	otherKey, err := os.ReadFile(otherP.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	otherRoot, err := os.ReadFile(otherP.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	otherAdmin, err := os.ReadFile(otherP.AdminCert)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("this is not PEM at all\n")
	tests := []struct {
		name    string
		file    string
		data    []byte // nil: remove the file
		wantErr error
		want    string
	}{
		{"root garbage", RootCertFile, garbage, nil, "holds no PEM certificate"},
		{"root missing", RootCertFile, nil, fs.ErrNotExist, "no such file"},
		{"root is a key", RootCertFile, otherKey, nil, `unexpected PEM block "PRIVATE KEY"`},
		{"root of another CA", RootCertFile, otherRoot, ErrNotChained, "is not signed by the root"},
		{"intermediate garbage", IntermediateCertFile, garbage, nil, "holds no PEM certificate"},
		{"intermediate is a leaf", IntermediateCertFile, otherAdmin, ErrNotChained, "not a CA certificate"},
		{"intermediate missing", IntermediateCertFile, nil, fs.ErrNotExist, "no such file"},
		{"key garbage", IntermediateKeyFile, garbage, nil, "does not hold a PEM private key"},
		{"key empty", IntermediateKeyFile, []byte{}, nil, "the file is empty"},
		{"key is a certificate", IntermediateKeyFile, otherRoot, nil, "not a private key"},
		{"key missing", IntermediateKeyFile, nil, fs.ErrNotExist, "no such file"},
		{"key of another CA", IntermediateKeyFile, otherKey, ErrKeyMismatch, "not the key of"},
		{"roots.pem garbage", RootsFile, garbage, nil, "holds no PEM certificate"},
		{"kms uri empty", IntermediateKeyURIFile, []byte("\n"), nil, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, _ := newCA(t, InitOptions{})
			path := filepath.Join(p.Dir, tt.file)
			if tt.data == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(LoadOptions{Dir: p.Dir})
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
			// Errors about one file name it (chain errors name the subjects instead).
			if tt.wantErr != ErrNotChained && tt.wantErr != ErrKeyMismatch && !strings.Contains(err.Error(), path) {
				t.Errorf("err = %q does not name %s", err, path)
			}
		})
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	now := time.Now()
	_, a := newCA(t, InitOptions{IntermediateValidity: 48 * time.Hour, Now: func() time.Time { return now }})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tmpl    *x509.Certificate
		pub     any
		wantErr string
		check   func(t *testing.T, c *x509.Certificate)
	}{
		{
			name: "ecdsa leaf", tmpl: leafTemplate("a.example.net", now, time.Hour), pub: &ecKey.PublicKey,
			check: func(t *testing.T, c *x509.Certificate) {
				if c.Subject.CommonName != "a.example.net" || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
					t.Errorf("subject/EKU not from the template: %v %v", c.Subject, c.ExtKeyUsage)
				}
			},
		},
		{
			name: "rsa leaf", tmpl: leafTemplate("b.example.net", now, time.Hour), pub: &rsaKey.PublicKey,
			check: func(t *testing.T, c *x509.Certificate) {
				if c.PublicKeyAlgorithm != x509.RSA || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
					t.Errorf("key %v signed with %v", c.PublicKeyAlgorithm, c.SignatureAlgorithm)
				}
			},
		},
		{
			name: "NotAfter capped at the intermediate's", tmpl: leafTemplate("c.example.net", now, 1000*time.Hour), pub: &ecKey.PublicKey,
			check: func(t *testing.T, c *x509.Certificate) {
				if !c.NotAfter.Equal(a.Intermediate().NotAfter) {
					t.Errorf("NotAfter %v, want the intermediate's %v", c.NotAfter, a.Intermediate().NotAfter)
				}
			},
		},
		{
			name: "NotBefore raised to the intermediate's", pub: &ecKey.PublicKey,
			tmpl: &x509.Certificate{Subject: pkix.Name{CommonName: "d"}, NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(time.Hour)},
			check: func(t *testing.T, c *x509.Certificate) {
				if !c.NotBefore.Equal(a.Intermediate().NotBefore) {
					t.Errorf("NotBefore %v, want %v", c.NotBefore, a.Intermediate().NotBefore)
				}
				if c.SerialNumber == nil || c.SerialNumber.BitLen() < 120 {
					t.Errorf("serial %v is not 128 random bits", c.SerialNumber)
				}
			},
		},
		{
			name: "template SKI kept", pub: &ecKey.PublicKey,
			tmpl: &x509.Certificate{SerialNumber: big.NewInt(7), SubjectKeyId: []byte{1, 2, 3}, NotAfter: now.Add(time.Hour)},
			check: func(t *testing.T, c *x509.Certificate) {
				if !bytes.Equal(c.SubjectKeyId, []byte{1, 2, 3}) {
					t.Errorf("SKI %x", c.SubjectKeyId)
				}
			},
		},
		{name: "nil template", pub: &ecKey.PublicKey, wantErr: "no certificate template"},
		{name: "nil key", tmpl: leafTemplate("x", now, time.Hour), wantErr: "no public key"},
		{name: "no NotAfter", tmpl: &x509.Certificate{}, pub: &ecKey.PublicKey, wantErr: "no NotAfter"},
		{
			name: "after the intermediate expired", pub: &ecKey.PublicKey,
			tmpl:    &x509.Certificate{NotBefore: now.Add(72 * time.Hour), NotAfter: now.Add(96 * time.Hour)},
			wantErr: "empty validity",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before x509.Certificate
			if tt.tmpl != nil {
				before = *tt.tmpl
			}
			der, c, err := a.Sign(tt.tmpl, tt.pub)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if tt.tmpl.SerialNumber != before.SerialNumber || !bytes.Equal(tt.tmpl.SubjectKeyId, before.SubjectKeyId) ||
				tt.tmpl.AuthorityKeyId != nil || tt.tmpl.SignatureAlgorithm != 0 ||
				!tt.tmpl.NotBefore.Equal(before.NotBefore) || !tt.tmpl.NotAfter.Equal(before.NotAfter) {
				t.Error("Sign modified the template")
			}
			if !bytes.Equal(der, c.Raw) {
				t.Error("DER and parsed certificate differ")
			}
			if err := c.CheckSignatureFrom(a.Intermediate()); err != nil {
				t.Errorf("not signed by the intermediate: %v", err)
			}
			if !bytes.Equal(c.AuthorityKeyId, a.Intermediate().SubjectKeyId) {
				t.Errorf("AKI %x, want %x", c.AuthorityKeyId, a.Intermediate().SubjectKeyId)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestSubjectKeyIDFastPath(t *testing.T) {
	t.Parallel()
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name string
		pub  any
	}{
		{"P-256", &ec256.PublicKey},
		{"P-384", &ec384.PublicKey},
		{"RSA", &rk.PublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := subjectKeyID(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			// The same computation through the full SPKI encoding.
			der, err := x509.MarshalPKIXPublicKey(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			var spki struct {
				Algorithm asn1.RawValue
				PublicKey asn1.BitString
			}
			if _, err := asn1.Unmarshal(der, &spki); err != nil {
				t.Fatal(err)
			}
			sum := sha256Sum(spki.PublicKey.Bytes)
			if !bytes.Equal(got, sum[:20]) {
				t.Errorf("SKI %x, want %x", got, sum[:20])
			}
		})
	}
}

func TestTLSCertificatesHandshake(t *testing.T) {
	t.Parallel()
	_, a := newCA(t, InitOptions{})
	now := time.Now()
	srv, err := a.ServerTLSCertificate([]string{"localhost", "127.0.0.1"}, 0, now)
	if err != nil {
		t.Fatalf("ServerTLSCertificate: %v", err)
	}
	if got := srv.Leaf.NotAfter.Sub(now); got < DefaultTLSValidity-time.Second || got > DefaultTLSValidity {
		t.Errorf("server validity %v, want %v", got, DefaultTLSValidity)
	}
	if len(srv.Certificate) != 2 || !bytes.Equal(srv.Certificate[1], a.Intermediate().Raw) {
		t.Error("server tls.Certificate does not carry the intermediate")
	}
	requireLintClean(t, "server", srv.Certificate[0])
	admin, err := a.ClientTLSCertificate(AdminCommonName, time.Hour, now)
	if err != nil {
		t.Fatalf("ClientTLSCertificate: %v", err)
	}
	requireLintClean(t, "admin", admin.Certificate[0])
	host, err := a.ClientTLSCertificate("host1.covalent.example.net", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}

	roots := pool(a.Roots()...)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{*srv},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	results := make(chan bool, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err != nil {
				results <- false
				c.Close()
				continue
			}
			results <- IsAdminCertificate(tc.ConnectionState().PeerCertificates[0])
			io.WriteString(tc, "ok")
			c.Close()
		}
	}()
	for _, tt := range []struct {
		name      string
		cert      *tls.Certificate
		wantAdmin bool
	}{
		{"admin", admin, true},
		{"host", host, false},
	} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs:      roots,
			ServerName:   "127.0.0.1",
			Certificates: []tls.Certificate{*tt.cert},
		})
		if err != nil {
			t.Fatalf("%s: dial: %v", tt.name, err)
		}
		io.ReadAll(conn)
		conn.Close()
		if got := <-results; got != tt.wantAdmin {
			t.Errorf("%s: server saw admin = %v, want %v", tt.name, got, tt.wantAdmin)
		}
	}
}

func TestTLSCertificateBadInput(t *testing.T) {
	t.Parallel()
	_, a := newCA(t, InitOptions{})
	if _, err := a.ServerTLSCertificate(nil, 0, time.Now()); err == nil {
		t.Error("server certificate without names")
	}
	if _, err := a.ServerTLSCertificate([]string{"me@example.net"}, 0, time.Now()); err == nil {
		t.Error("server certificate for an e-mail address")
	}
	if _, err := a.ClientTLSCertificate("", 0, time.Now()); err == nil {
		t.Error("client certificate without CN")
	}
}

func TestIsAdminCertificate(t *testing.T) {
	t.Parallel()
	mk := func(cn string, ou []string, eku ...x509.ExtKeyUsage) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ou}, ExtKeyUsage: eku}
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want bool
	}{
		{"admin", mk(AdminCommonName, []string{AdminOrganizationalUnit}, x509.ExtKeyUsageClientAuth), true},
		{"nil", nil, false},
		{"CN only", mk(AdminCommonName, nil, x509.ExtKeyUsageClientAuth), false},
		{"OU only", mk("host", []string{AdminOrganizationalUnit}, x509.ExtKeyUsageClientAuth), false},
		{"server auth", mk(AdminCommonName, []string{AdminOrganizationalUnit}, x509.ExtKeyUsageServerAuth), false},
	}
	for _, tt := range tests {
		if got := IsAdminCertificate(tt.cert); got != tt.want {
			t.Errorf("%s: IsAdminCertificate = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRootsRotation(t *testing.T) {
	t.Parallel()
	p, a := newCA(t, InitOptions{})
	other, _ := newCA(t, InitOptions{Name: "next"})
	newRoot, err := os.ReadFile(other.RootCert)
	if err != nil {
		t.Fatal(err)
	}
	// roots.pem repeats the current root and adds the next one.
	oldRoot, _ := os.ReadFile(p.RootCert)
	if err := os.WriteFile(filepath.Join(p.Dir, RootsFile), append(oldRoot, newRoot...), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(LoadOptions{Dir: p.Dir})
	if err != nil {
		t.Fatal(err)
	}
	roots := b.Roots()
	if len(roots) != 2 || roots[1].Subject.CommonName != "next Root CA" {
		t.Fatalf("roots = %d, want old+new", len(roots))
	}
	if b.Fingerprint() != a.Fingerprint() {
		t.Error("fingerprint changed with roots.pem")
	}
	if got := bytes.Count(b.RootsPEM(), []byte("BEGIN CERTIFICATE")); got != 2 {
		t.Errorf("RootsPEM holds %d certificates", got)
	}
	roots[0] = nil // the returned slice is a copy
	if b.Roots()[0] == nil {
		t.Error("Roots exposes internal state")
	}
}

func TestAccessors(t *testing.T) {
	t.Parallel()
	p, a := newCA(t, InitOptions{})
	root := readCert(t, p.RootCert)
	sum := sha256Sum(root.Raw)
	if got, want := a.Fingerprint(), hexLower(sum[:]); got != want {
		t.Errorf("Fingerprint %s, want %s", got, want)
	}
	rootPEM, _ := os.ReadFile(p.RootCert)
	if !bytes.Equal(a.RootsPEM(), rootPEM) {
		t.Error("RootsPEM differs from root.crt")
	}
	intPEM, _ := os.ReadFile(p.IntermediateCert)
	if !bytes.Equal(a.ChainPEM(), intPEM) {
		t.Error("ChainPEM differs from intermediate.crt")
	}
	if len(a.Chain()) != 1 || !a.Chain()[0].Equal(a.Intermediate()) {
		t.Error("Chain is not the intermediate")
	}
	if !publicKeysEqual(a.signer.Public(), a.Intermediate().PublicKey) {
		t.Error("the signer is not the intermediate key")
	}
	if a.SignatureAlgorithm() != x509.ECDSAWithSHA256 {
		t.Errorf("SignatureAlgorithm %v", a.SignatureAlgorithm())
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestSignConcurrent(t *testing.T) {
	t.Parallel()
	_, a := newCA(t, InitOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := leafTemplate("c.example.net", time.Now(), time.Hour)
			tmpl.SerialNumber = big.NewInt(int64(i + 1))
			if _, _, err := a.Sign(tmpl, &key.PublicKey); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkSign measures Sign for a P-256 leaf with a P-256 intermediate.
func BenchmarkSign(b *testing.B) {
	_, a := newCA(b, InitOptions{})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := leafTemplate("host1.covalent.example.net", time.Now(), 24*time.Hour)
	tmpl.SerialNumber = nil
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := a.Sign(tmpl, &key.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}
