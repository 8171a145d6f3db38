package issuance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/lanyard/lanyard/internal/testpki"
	"github.com/lanyard/lanyard/renewal/schedule"
	"github.com/lanyard/lanyard/store"
)

// enrolled issues a certificate for cn (with cn as its one SAN) and
// returns it.
func (f *fixture) enrolled(t testing.TB, cn string) *Issued {
	t.Helper()
	iss, err := f.svc.Enroll(context.Background(), f.token(t, cn, cn), testpki.CSR(t, testpki.Key(t, "ec"), nil))
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// reprofile replaces the covalent profile with cfg.
func (f *fixture) reprofile(t *testing.T, change func(*ProfileConfig)) {
	t.Helper()
	cfg := ProfileConfig{CN: []string{"*.covalent.example.net"}, DNS: []string{"*.covalent.example.net"}}
	change(&cfg)
	ps, err := CompileProfiles(map[string]ProfileConfig{"covalent": cfg}, "covalent")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SetProfiles(ps); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) certCount(t *testing.T) int {
	t.Helper()
	certs, _, err := f.db.ListCerts(store.CertQuery{Now: f.now, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

func TestIssueRefusesAGrantItDidNotMake(t *testing.T) {
	f := newFixture(t)
	for _, g := range []*Grant{nil, {CN: "forged.covalent.example.net", Profile: "covalent"}} {
		if _, err := f.svc.Issue(context.Background(), g, testpki.CSR(t, testpki.Key(t, "ec"), nil)); !errors.Is(err, ErrNoGrant) {
			t.Fatalf("Issue(%+v) = %v, want ErrNoGrant", g, err)
		}
	}
	if n := f.certCount(t); n != 0 {
		t.Fatalf("%d certificates recorded", n)
	}
}

// A profile tightened after a token was minted, or after a certificate
// was issued, is enforced when the token is redeemed or the certificate
// renewed (issue 9, item 7): refused, naming the name, nothing written.
func TestIssueChecksTheProfileAsItIsNow(t *testing.T) {
	const cn = "web1.covalent.example.net"
	tests := []struct {
		name    string
		tighten func(*ProfileConfig)
		naming  string
	}{
		{"SAN now denied", func(c *ProfileConfig) { c.DenyDNS = []string{cn} }, cn},
		{"SANs no longer allowed", func(c *ProfileConfig) { c.DNS = nil }, cn},
		{"CN no longer allowed", func(c *ProfileConfig) { c.CN = []string{"*.other.example.net"} }, cn},
	}
	for _, tc := range tests {
		for _, via := range []string{"enroll", "renew"} {
			t.Run(tc.name+"/"+via, func(t *testing.T) {
				f := newFixture(t)
				var cur *Issued
				tok := f.token(t, cn, cn)
				if via == "renew" {
					cur = f.enrolled(t, cn)
				}
				before := f.certCount(t)
				f.reprofile(t, tc.tighten)
				var err error
				if via == "enroll" {
					_, err = f.svc.Enroll(context.Background(), tok, testpki.CSR(t, testpki.Key(t, "ec"), nil))
				} else {
					_, err = f.svc.Renew(context.Background(), cur.Cert, testpki.CSR(t, testpki.Key(t, "ec"), nil))
				}
				if !errors.Is(err, ErrNameNotAllowed) || !strings.Contains(err.Error(), tc.naming) {
					t.Fatalf("err = %v, want ErrNameNotAllowed naming %q", err, tc.naming)
				}
				if n := f.certCount(t); n != before {
					t.Fatalf("%d certificates recorded, want %d", n, before)
				}
				if via == "enroll" {
					if tk, _ := f.db.GetToken(mustTokenID(t, tok)); !tk.UsedAt.IsZero() {
						t.Fatal("a refused redemption consumed the token")
					}
				}
			})
		}
	}
}

func mustTokenID(t *testing.T, tok string) string {
	t.Helper()
	id, _, err := ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// RenewalInfo says profile-changed whenever the profile as it is now would
// not issue a live certificate as it is (issue 9, item 7).
func TestRenewalInfoProfileChanged(t *testing.T) {
	const cn = "web2.covalent.example.net"
	tests := []struct {
		name   string
		change func(*ProfileConfig)
		want   string
	}{
		{"unchanged", func(*ProfileConfig) {}, schedule.ReasonScheduled},
		{"SAN denied", func(c *ProfileConfig) { c.DenyDNS = []string{cn} }, schedule.ReasonProfileChanged},
		{"CN refused", func(c *ProfileConfig) { c.CN = []string{"other.example.net"} }, schedule.ReasonProfileChanged},
		{"key type refused", func(c *ProfileConfig) { c.KeyTypes = []string{KeyRSA} }, schedule.ReasonProfileChanged},
		{"lifetime changed", func(c *ProfileConfig) { c.DefaultTTL = 48 * DefaultTTL }, schedule.ReasonProfileChanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			iss := f.enrolled(t, cn)
			f.reprofile(t, tc.change)
			w, err := f.svc.RenewalInfo(iss.Record.Serial)
			if err != nil {
				t.Fatal(err)
			}
			if w.Reason != tc.want {
				t.Fatalf("reason %q, want %q", w.Reason, tc.want)
			}
		})
	}
}

// The server's only key rule at renewal is the profile's key types: a
// change of type the profile allows goes through (the agent's
// allow_key_type_change decides for the host), one it does not is refused.
func TestRenewKeyTypeRule(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name     string
		keyTypes []string
		csr      func(t *testing.T) []byte
		want     error
	}{
		{"P-256 to RSA, profile allows all", nil, func(t *testing.T) []byte { return testpki.CSR(t, rsaKey, nil) }, nil},
		{"P-256 to P-384, profile allows all", nil, func(t *testing.T) []byte { return testpki.CSR(t, p384, nil) }, nil},
		{"P-256 to RSA, profile allows EC only", []string{KeyP256, KeyP384}, func(t *testing.T) []byte { return testpki.CSR(t, rsaKey, nil) }, ErrKeyType},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cur := f.enrolled(t, "kt.covalent.example.net")
			f.reprofile(t, func(c *ProfileConfig) { c.KeyTypes = tc.keyTypes })
			r, err := f.svc.Renew(context.Background(), cur.Cert, tc.csr(t))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && (r.Previous != cur.Record.Serial || r.Record.PreviousSerial != cur.Record.Serial) {
				t.Fatalf("renewal not linked: previous %q, record %q", r.Previous, r.Record.PreviousSerial)
			}
		})
	}
}

func TestRenewRefusals(t *testing.T) {
	f := newFixture(t)
	cur := f.enrolled(t, "r.covalent.example.net")
	key := testpki.Key(t, "ec")
	tests := []struct {
		name string
		// cert is what the TLS layer verified; the fixture does not hold
		// the enrolled certificate's key, so key reuse is shown with the
		// record's serial and a key we hold.
		cert *x509.Certificate
		want error
	}{
		{"key reuse", &x509.Certificate{SerialNumber: cur.Cert.SerialNumber, PublicKey: key.Public()}, ErrKeyReuse},
		{"unknown certificate", &x509.Certificate{SerialNumber: serialInt([]byte{1, 2, 3}), PublicKey: cur.Cert.PublicKey}, ErrNotRenewable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.certCount(t)
			if _, err := f.svc.Renew(context.Background(), tc.cert, testpki.CSR(t, key, nil)); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n := f.certCount(t); n != before {
				t.Fatalf("%d certificates recorded, want %d", n, before)
			}
		})
	}
}
