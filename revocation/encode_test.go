package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/lanyard/lanyard/certlint"
	"github.com/lanyard/lanyard/store"
)

// testEntries makes n encoded entries with every allowed reason, serials
// with a leading zero byte and with the top bit set, revoked before at
// (with sub-second times, which the CRL truncates).
func testEntries(t testing.TB, n int, at time.Time) []*entry {
	t.Helper()
	out := make([]*entry, 0, n)
	for i := range n {
		serial := randomSerial(t)
		switch i % 3 {
		case 0:
			serial = "00" + serial[2:]
		case 1:
			serial = "80" + serial[2:]
		}
		revokedAt := at.Add(-time.Duration(i) * time.Second).Add(-time.Duration(i%1000) * time.Millisecond)
		e, err := newEntry(&store.Cert{
			Serial:     serial,
			NotAfter:   at.Add(time.Hour),
			Revocation: &store.Revocation{At: revokedAt, Reason: AllowedReasons[i%len(AllowedReasons)]},
		})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestDirectEncodingMatchesX509 proves the direct encoder produces, byte
// for byte, the TBSCertList x509.CreateRevocationList (through ca's
// SignCRL) produces for the same input, for every key type ca supports.
func TestDirectEncodingMatchesX509(t *testing.T) {
	tests := []struct {
		keyType    string
		entries    int
		thisUpdate time.Time
	}{
		{"P-256", 0, time.Now()},
		{"P-256", 50, time.Now()},
		{"P-384", 50, time.Now()},
		{"RSA-2048", 50, time.Now()},
		{"P-256", 5, time.Date(2049, 12, 31, 20, 0, 0, 0, time.UTC)}, // nextUpdate a GeneralizedTime
		{"P-256", 5, time.Date(2051, 1, 2, 3, 4, 5, 0, time.UTC)},    // every time a GeneralizedTime
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d/%d", tt.keyType, tt.entries, tt.thisUpdate.Year()), func(t *testing.T) {
			auth := newAuthority(t, tt.keyType)
			s := &Service{signer: auth}
			s.keySigner, s.algID = directAlgID(auth)
			if s.keySigner == nil {
				t.Fatalf("ca.Authority (%v) cannot sign directly", auth.SignatureAlgorithm())
			}
			this := tt.thisUpdate.UTC().Truncate(time.Second)
			next := this.Add(24 * time.Hour)
			entries := testEntries(t, tt.entries, this)

			s.directMin = 1 << 30
			viaCA, err := s.sign(42, this, next, entries)
			if err != nil {
				t.Fatal(err)
			}
			s.directMin = 0
			direct, err := s.sign(42, this, next, entries)
			if err != nil {
				t.Fatal(err)
			}
			a, b := parse(t, auth, viaCA), parse(t, auth, direct)
			if !bytes.Equal(a.RawTBSRevocationList, b.RawTBSRevocationList) {
				t.Fatalf("TBS differs:\nx509:   %x\ndirect: %x", a.RawTBSRevocationList, b.RawTBSRevocationList)
			}
			if a.SignatureAlgorithm != b.SignatureAlgorithm || b.Number.Cmp(big.NewInt(42)) != 0 {
				t.Fatalf("algorithm %v vs %v, number %v", a.SignatureAlgorithm, b.SignatureAlgorithm, b.Number)
			}
			if err := certlint.CRL(direct); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// signOnly hides KeySigner: a CA that only offers SignCRL.
type signOnly struct{ a CRLSigner }

func (s signOnly) SignCRL(t *x509.RevocationList) ([]byte, error) { return s.a.SignCRL(t) }
func (s signOnly) Intermediate() *x509.Certificate                { return s.a.Intermediate() }

func TestSignCRLOnlySigner(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Signer = signOnly{e.auth}
	e.restart()
	if e.svc.keySigner != nil {
		t.Fatal("direct signing chosen without a KeySigner")
	}
	e.svc.directMin = 0
	c := e.addCert("s.covalent.example.net", time.Hour)
	res := e.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise})
	if _, ok := listed(parse(t, e.auth, e.svc.Current().DER))[c.Serial]; !ok || res.CRLNumber != e.svc.Current().Number {
		t.Fatal("CRL signed through SignCRL does not list the certificate")
	}
}

func TestDirectSigningRefusesWrongKey(t *testing.T) {
	a, other := newAuthority(t, ""), newAuthority(t, "")
	tbs, err := encodeTBS(sigAlgs[x509.ECDSAWithSHA256].algID, a.Intermediate(), 1, time.Now(), time.Now().Add(time.Hour), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signTBS(other, a.Intermediate(), tbs); err == nil {
		t.Fatal("a CRL signed by another key was accepted")
	}
}

// BenchmarkBuildCRL100k builds and signs a CRL of 100,000 revoked
// certificates from the in-memory revoked set, as every revocation does.
// "encode+sign" is the CRL itself; "build" adds the durable CRL number,
// PEM and persisting the DER in the store; "x509" is the same CRL through
// ca.SignCRL (x509.CreateRevocationList), for comparison.
func BenchmarkBuildCRL100k(b *testing.B) {
	const n = 100000
	e := newEnv(b, nil)
	now := e.clock.Now()
	entries := testEntries(b, n, now)
	ctx := context.Background()
	b.Run("encode+sign", func(b *testing.B) {
		e.svc.directMin = 0
		for b.Loop() {
			der, err := e.svc.sign(7, now, now.Add(24*time.Hour), entries)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(der)), "der_bytes")
		}
	})
	b.Run("build", func(b *testing.B) {
		e.svc.directMin = 0
		for b.Loop() {
			crl, err := e.svc.buildCRL(ctx, entries)
			if err != nil {
				b.Fatal(err)
			}
			if crl.Entries != n {
				b.Fatalf("%d entries", crl.Entries)
			}
		}
	})
	b.Run("x509", func(b *testing.B) {
		e.svc.directMin = 1 << 30
		for b.Loop() {
			if _, err := e.svc.sign(7, now, now.Add(24*time.Hour), entries); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReloadRevoked100k measures what New and Rebuild pay to read
// 100,000 revoked certificates from the store (store.RevokedUnexpired
// decodes every whole record, DER included) and encode their entries.
func BenchmarkReloadRevoked100k(b *testing.B) {
	const n = 100000
	e := newEnv(b, nil)
	now := e.clock.Now()
	ctx := context.Background()
	serials := make(chan string)
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for serial := range serials {
				addCertTo(b, e.db, serial, "bench.covalent.example.net", now, time.Hour)
				if _, _, err := e.db.Revoke(ctx, serial, store.Revocation{At: now, Reason: ReasonKeyCompromise, By: "bench"}, nil); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range n {
		serials <- randomSerial(b)
	}
	close(serials)
	wg.Wait()
	b.ResetTimer()
	for b.Loop() {
		e.svc.mu.Lock()
		e.svc.entries, e.svc.bySerial = nil, map[string]*entry{}
		e.svc.mu.Unlock()
		added, err := e.svc.reload(now)
		if err != nil || len(added) != n {
			b.Fatalf("reload: %d, %v", len(added), err)
		}
	}
}
