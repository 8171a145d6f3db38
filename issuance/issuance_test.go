package issuance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/certlint"
	"github.com/lanyard/lanyard/internal/testpki"
	"github.com/lanyard/lanyard/store"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type fixture struct {
	svc *Service
	db  store.Store
	ca  *ca.Authority
	now time.Time
	// caDir is the CA folder (tests that rotate the intermediate).
	caDir string
}

// newFixture builds a Service on a real CA and store with the covalent
// profile; opts may change the profile set before it is built.
func newFixture(t testing.TB, opts ...func(map[string]ProfileConfig)) *fixture {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.Init(ca.InitOptions{Dir: filepath.Join(dir, "ca"), Now: func() time.Time { return testNow.Add(-time.Hour) }}); err != nil {
		t.Fatal(err)
	}
	a, err := ca.Load(ca.LoadOptions{Dir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(dir, "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(); a.Close() })
	cfgs := map[string]ProfileConfig{
		"covalent": {CN: []string{"*.covalent.example.net"}, DNS: []string{"*.covalent.example.net"}},
	}
	for _, o := range opts {
		o(cfgs)
	}
	ps, err := CompileProfiles(cfgs, "covalent")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, ca: a, now: testNow, caDir: filepath.Join(dir, "ca")}
	f.svc, err = New(Config{Signer: a, Store: db, Profiles: ps, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) token(t testing.TB, cn string, dns ...string) string {
	t.Helper()
	secret, _, err := f.svc.CreateToken(context.Background(), TokenRequest{CN: cn, DNSNames: dns, By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func TestEnrollIssuesWhatTheProfileSays(t *testing.T) {
	f := newFixture(t)
	cn := "host1.covalent.example.net"
	tok := f.token(t, cn, cn)
	iss, err := f.svc.Enroll(context.Background(), tok, testpki.CSR(t, testpki.Key(t, "ec"), &x509.CertificateRequest{DNSNames: []string{cn}}))
	if err != nil {
		t.Fatal(err)
	}
	c := iss.Cert
	if c.Subject.CommonName != cn || len(c.DNSNames) != 1 || c.DNSNames[0] != cn {
		t.Errorf("subject %q SANs %v", c.Subject.CommonName, c.DNSNames)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != DefaultTTL+Backdate {
		t.Errorf("lifetime %s, want %s", got, DefaultTTL+Backdate)
	}
	if !c.NotBefore.Equal(testNow.Add(-Backdate)) {
		t.Errorf("NotBefore %s", c.NotBefore)
	}
	if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("extensions: CA=%v KU=%v EKU=%v", c.IsCA, c.KeyUsage, c.ExtKeyUsage)
	}
	if len(c.SubjectKeyId) == 0 || c.SerialNumber.BitLen() < 100 {
		t.Errorf("SKI %x serial bits %d", c.SubjectKeyId, c.SerialNumber.BitLen())
	}
	if err := certlint.Certificate(iss.DER); err != nil {
		t.Errorf("zlint: %v", err)
	}
	rec, err := f.db.GetCert(iss.Record.Serial)
	if err != nil || rec.TokenID == "" {
		t.Fatalf("record %+v, %v", rec, err)
	}
}

func TestEnrollBadInput(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	tests := []struct {
		name  string
		token func(f *fixture) string
		csr   func(t *testing.T) []byte
		want  error
	}{
		{"malformed token", func(*fixture) string { return "not-a-token" }, nil, ErrTokenMalformed},
		{"unknown token", func(*fixture) string { s, _ := NewTokenSecret(); return s }, nil, ErrTokenInvalid},
		{"expired token", func(f *fixture) string {
			s := f.token(t, "a.covalent.example.net")
			f.now = f.now.Add(2 * time.Hour)
			return s
		}, nil, ErrTokenInvalid},
		{"empty CSR", nil, func(*testing.T) []byte { return nil }, ErrBadCSR},
		{"garbage CSR", nil, func(*testing.T) []byte { return []byte("\x30\x03garbage") }, ErrBadCSR},
		{"bad CSR signature", nil, func(t *testing.T) []byte {
			d := testpki.CSR(t, testpki.Key(t, "ec"), nil)
			d[len(d)-3] ^= 0xff
			return d
		}, ErrBadCSR},
		{"RSA 1024", nil, func(t *testing.T) []byte { return testpki.CSR(t, rsa1024, nil) }, ErrKeyType},
		{"P-224", nil, func(t *testing.T) []byte { return testpki.CSR(t, p224, nil) }, ErrKeyType},
		{"other CN", nil, func(t *testing.T) []byte {
			return testpki.CSR(t, testpki.Key(t, "ec"), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil.covalent.example.net"}})
		}, ErrNameNotAllowed},
		{"extra SAN", nil, func(t *testing.T) []byte {
			return testpki.CSR(t, testpki.Key(t, "ec"), &x509.CertificateRequest{DNSNames: []string{"other.covalent.example.net"}})
		}, ErrNameNotAllowed},
		{"IP SAN", nil, func(t *testing.T) []byte {
			return testpki.CSR(t, testpki.Key(t, "ec"), &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}})
		}, ErrNameNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tok := ""
			if tc.token != nil {
				tok = tc.token(f)
			} else {
				tok = f.token(t, "a.covalent.example.net")
			}
			csr := testpki.CSR(t, testpki.Key(t, "ec"), nil)
			if tc.csr != nil {
				csr = tc.csr(t)
			}
			_, err := f.svc.Enroll(context.Background(), tok, csr)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if certs, _, _ := f.db.ListCerts(store.CertQuery{Now: f.now}); len(certs) != 0 {
				t.Fatalf("refused enrollment left %d certificates in the store", len(certs))
			}
		})
	}
}

func TestTokenSingleUseUnderConcurrency(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, "busy.covalent.example.net")
	csr := testpki.CSR(t, testpki.Key(t, "ec"), nil)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.svc.Enroll(context.Background(), tok, csr); err == nil {
				ok.Add(1)
			} else if errors.Is(err, ErrTokenInvalid) {
				refused.Add(1)
			} else {
				t.Errorf("unexpected: %v", err)
			}
		}()
	}
	wg.Wait()
	certs, _, _ := f.db.ListCerts(store.CertQuery{Now: f.now, Limit: 1000})
	if ok.Load() != 1 || refused.Load() != 99 || len(certs) != 1 {
		t.Fatalf("ok=%d refused=%d stored=%d; want 1, 99, 1", ok.Load(), refused.Load(), len(certs))
	}
}

func TestCreateTokenRefusesNamesOutsideProfile(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		cn  string
		dns []string
	}{
		{"evil.example.com", nil},
		{"a.b.covalent.example.net", nil}, // glob is one label
		{"host\x00.covalent.example.net", nil},
		{"host\n.covalent.example.net", nil},
		{"hоst.covalent.example.net", nil}, // Cyrillic o
		{"ok.covalent.example.net", []string{"evil.example.com"}},
	} {
		if _, _, err := f.svc.CreateToken(context.Background(), TokenRequest{CN: tc.cn, DNSNames: tc.dns}); !errors.Is(err, ErrNameNotAllowed) {
			t.Errorf("CreateToken(%q, %v) = %v, want ErrNameNotAllowed", tc.cn, tc.dns, err)
		}
	}
}

func TestCompileProfileRules(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ProfileConfig
		allowed []string
		refused []string
		wantErr bool
	}{
		{"exact", ProfileConfig{CN: []string{"db.example"}}, []string{"db.example"}, []string{"db2.example", "x.db.example"}, false},
		{"glob", ProfileConfig{CN: []string{"*.c.example"}}, []string{"a.c.example", "a-1.c.example"}, []string{"c.example", "a.b.c.example", "-a.c.example", "A.c.example"}, false},
		{"regex anchored", ProfileConfig{CN: []string{`re:host[0-9]+\.example`}}, []string{"host12.example"}, []string{"xhost1.example", "host1.example.evil"}, false},
		{"no rules", ProfileConfig{}, nil, nil, true},
		{"bad regex", ProfileConfig{CN: []string{"re:("}}, nil, nil, true},
		{"mid glob", ProfileConfig{CN: []string{"a.*.example"}}, nil, nil, true},
		{"ttl too short", ProfileConfig{CN: []string{"a"}, DefaultTTL: time.Minute}, nil, nil, true},
		{"max below default", ProfileConfig{CN: []string{"a"}, DefaultTTL: time.Hour, MaxTTL: 30 * time.Minute}, nil, nil, true},
		{"unknown key type", ProfileConfig{CN: []string{"a"}, KeyTypes: []string{"Ed25519"}}, nil, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := CompileProfile("p", tc.cfg)
			if tc.wantErr {
				if !errors.Is(err, ErrBadProfile) {
					t.Fatalf("err = %v, want ErrBadProfile", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, cn := range tc.allowed {
				if !p.AllowsCN(cn) {
					t.Errorf("%q refused", cn)
				}
			}
			for _, cn := range tc.refused {
				if p.AllowsCN(cn) {
					t.Errorf("%q allowed", cn)
				}
			}
		})
	}
}

func TestStrictProfileLintsEveryCertificate(t *testing.T) {
	f := newFixture(t, func(m map[string]ProfileConfig) {
		p := m["covalent"]
		p.Strict = true
		m["covalent"] = p
	})
	if _, err := f.svc.Enroll(context.Background(), f.token(t, "s.covalent.example.net"), testpki.CSR(t, testpki.Key(t, "ec"), nil)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseToken(f *testing.F) {
	s, _ := NewTokenSecret()
	for _, seed := range []string{s, "", "lyt1_", "lyt1_!!!!", TokenPrefix + "AAAA", "  " + s + "\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, hash, err := ParseToken(tok)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("unexpected error type %v", err)
			}
			return
		}
		if len(id) != 2*tokenIDBytes || len(hash) != 32 {
			t.Fatalf("id %q hash %d bytes", id, len(hash))
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "a"}}, k)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ParseCSR(der)
		if err == nil && csr.CheckSignature() != nil {
			t.Fatal("ParseCSR accepted a CSR whose signature does not verify")
		}
	})
}

func BenchmarkEnroll(b *testing.B) {
	f := newFixture(b)
	toks := make([]string, b.N)
	csrs := make([][]byte, b.N)
	for i := range toks {
		toks[i] = f.token(b, "bench.covalent.example.net")
		csrs[i] = testpki.CSR(b, testpki.Key(b, "ec"), nil)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.svc.Enroll(context.Background(), toks[i], csrs[i]); err != nil {
			b.Fatal(err)
		}
	}
}
