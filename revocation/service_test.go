package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/certlint"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/store"
)

func TestNewBuildsFirstCRL(t *testing.T) {
	e := newEnv(t, nil)
	crl := e.svc.Current()
	if crl == nil {
		t.Fatal("Current() is nil after New")
	}
	rl := parse(t, e.auth, crl.DER)
	if crl.Number != 1 || rl.Number.Int64() != 1 || crl.Entries != 0 || len(rl.RevokedCertificateEntries) != 0 {
		t.Fatalf("first CRL: number %d (%v), entries %d", crl.Number, rl.Number, len(rl.RevokedCertificateEntries))
	}
	if !crl.ThisUpdate.Equal(e.clock.Now()) || !crl.NextUpdate.Equal(e.clock.Now().Add(DefaultValidity)) {
		t.Fatalf("thisUpdate %v nextUpdate %v, clock %v", crl.ThisUpdate, crl.NextUpdate, e.clock.Now())
	}
	if !bytes.HasPrefix(crl.PEM, []byte("-----BEGIN X509 CRL-----\n")) {
		t.Fatalf("PEM: %.40q", crl.PEM)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	auth := newAuthority(t, "")
	db := openStore(t, filepath.Join(t.TempDir(), "s.db"))
	defer db.Close()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{Signer: auth}},
		{"no signer", Config{Store: db}},
		{"validity too short", Config{Store: db, Signer: auth, Validity: time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(tt.cfg); err == nil {
				s.Close()
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestRevokeBadInput(t *testing.T) {
	e := newEnv(t, nil)
	victim := e.addCert("victim.covalent.example.net", time.Hour)
	expired := e.addCert("old.covalent.example.net", time.Minute)
	e.clock.Advance(2 * time.Minute)
	tests := []struct {
		name string
		req  Request
		want error
	}{
		{"unknown serial", Request{Serial: randomSerial(t)}, ErrNotFound},
		{"unknown CN", Request{CN: "nobody.covalent.example.net"}, ErrNotFound},
		{"CN with only expired certificates", Request{CN: expired.CN}, ErrNotFound},
		{"unknown reason code", Request{Serial: victim.Serial, Reason: 7}, ErrUnknownReason},
		{"reason not for leaves", Request{Serial: victim.Serial, Reason: ReasonCACompromise}, ErrUnknownReason},
		{"certificateHold", Request{Serial: victim.Serial, Reason: ReasonCertificateHold}, ErrUnknownReason},
		{"negative reason", Request{Serial: victim.Serial, Reason: -1}, ErrUnknownReason},
		{"neither serial nor CN", Request{}, ErrBadRequest},
		{"blank serial and CN", Request{Serial: "  ", CN: "\t"}, ErrBadRequest},
		{"both serial and CN", Request{Serial: victim.Serial, CN: victim.CN}, ErrBadRequest},
		{"serial not hex", Request{Serial: "zz" + victim.Serial[2:]}, ErrBadRequest},
		{"serial too long", Request{Serial: strings.Repeat("a", 42)}, ErrBadRequest},
		{"no actor", Request{Serial: victim.Serial, By: " "}, ErrBadRequest},
		{"oversize comment", Request{Serial: victim.Serial, Comment: strings.Repeat("x", MaxCommentBytes+1)}, ErrBadRequest},
		{"comment not UTF-8", Request{Serial: victim.Serial, Comment: "\xff"}, ErrBadRequest},
		{"CN with NUL", Request{CN: "a\x00b"}, ErrBadRequest},
	}
	number, audits, current := crlNumber(t, e.db), auditCount(t, e.db), e.svc.Current()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req.By == "" {
				req.By = "admin:test"
			}
			res, err := e.svc.Revoke(context.Background(), req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Revoke = %+v, %v; want %v", res, err, tt.want)
			}
			if res != nil {
				t.Fatalf("Revoke returned a result with an error: %+v", res)
			}
			if tt.want == ErrNotFound && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("ErrNotFound does not wrap store.ErrNotFound: %v", err)
			}
			if msg := err.Error(); len(msg) < 10 || strings.Contains(msg, "%!") {
				t.Fatalf("unclear message %q", msg)
			}
		})
	}
	// Nothing changed: the certificate, the audit log, the CRL.
	got, err := e.db.GetCert(victim.Serial)
	if err != nil || got.Revocation != nil {
		t.Fatalf("victim after bad requests: %+v, %v", got, err)
	}
	if n := crlNumber(t, e.db); n != number {
		t.Fatalf("CRL number moved from %d to %d", number, n)
	}
	if n := auditCount(t, e.db); n != audits {
		t.Fatalf("audit events went from %d to %d", audits, n)
	}
	if e.svc.Current() != current {
		t.Fatal("a new CRL was built")
	}
}

func TestRevokeTwiceIsIdempotent(t *testing.T) {
	e := newEnv(t, nil)
	c := e.addCert("twice.covalent.example.net", time.Hour)
	first := e.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise, Comment: "laptop stolen", By: "admin:alice"})
	if !first.Changed || len(first.Certificates) != 1 || first.CRLNumber != 2 {
		t.Fatalf("first revoke: changed %v, %d certs, CRL %d", first.Changed, len(first.Certificates), first.CRLNumber)
	}
	at := first.Certificates[0].Revocation.At
	e.clock.Advance(time.Minute)
	// Same serial, other spelling, other reason and actor.
	second := e.revoke(Request{Serial: strings.ToUpper(c.Serial), Reason: ReasonSuperseded, By: "admin:bob"})
	if second.Changed {
		t.Fatal("second revoke reports a change")
	}
	if second.CRLNumber != first.CRLNumber {
		t.Fatalf("second revoke: CRL %d, want %d", second.CRLNumber, first.CRLNumber)
	}
	rev := second.Certificates[0].Revocation
	if rev.Reason != ReasonKeyCompromise || !rev.At.Equal(at) || rev.By != "admin:alice" || rev.Comment != "laptop stolen" {
		t.Fatalf("first revocation not kept: %+v", rev)
	}
	if n := crlNumber(t, e.db); n != 2 {
		t.Fatalf("a CRL was built for the idempotent revoke: number %d", n)
	}
	if n := auditCount(t, e.db); n != 1 {
		t.Fatalf("%d audit events, want 1", n)
	}
	evs, _, _ := e.db.ListAudit(store.AuditQuery{Action: AuditAction})
	if ev := evs[0]; ev.Actor != "admin:alice" || ev.Subject != c.Serial || !strings.Contains(ev.Detail, "keyCompromise") || !strings.Contains(ev.Detail, "laptop stolen") {
		t.Fatalf("audit event %+v", ev)
	}
}

func TestRevokeByCN(t *testing.T) {
	e := newEnv(t, nil)
	const cn = "web1.covalent.example.net"
	expired := e.addCert(cn, time.Minute)
	e.clock.Advance(2 * time.Minute)
	a := e.addCert(cn, time.Hour)
	b := e.addCert(cn, 2*time.Hour)
	other := e.addCert("web2.covalent.example.net", time.Hour)
	e.revoke(Request{Serial: a.Serial, Reason: ReasonSuperseded})

	res := e.revoke(Request{CN: cn, Reason: ReasonPrivilegeWithdrawn, By: "admin:carol", Comment: "host retired"})
	if !res.Changed {
		t.Fatal("revoke by CN changed nothing")
	}
	got := map[string]int{}
	for _, c := range res.Certificates {
		got[c.Serial] = c.Revocation.Reason
	}
	want := map[string]int{a.Serial: ReasonSuperseded, b.Serial: ReasonPrivilegeWithdrawn}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("revoked %v, want %v", got, want)
	}
	for serial, revoked := range map[string]bool{expired.Serial: false, other.Serial: false, b.Serial: true} {
		c, _ := e.db.GetCert(serial)
		if (c.Revocation != nil) != revoked {
			t.Errorf("%s revoked = %v, want %v", serial, c.Revocation != nil, revoked)
		}
	}
	m := listed(parse(t, e.auth, e.svc.Current().DER))
	if len(m) != 2 || m[a.Serial].ReasonCode != ReasonSuperseded || m[b.Serial].ReasonCode != ReasonPrivilegeWithdrawn {
		t.Fatalf("CRL lists %v", m)
	}
	again := e.revoke(Request{CN: cn, Reason: ReasonKeyCompromise})
	if again.Changed || again.CRLNumber != res.CRLNumber || len(again.Certificates) != 2 {
		t.Fatalf("second revoke by CN: %+v", again)
	}
}

func TestRevokeCascadesToRenewals(t *testing.T) {
	e := newEnv(t, nil)
	prev := e.addCert("renewed.covalent.example.net", time.Hour)
	next := &store.Cert{Serial: randomSerial(t), CN: prev.CN, Profile: "covalent", NotBefore: e.clock.Now(), NotAfter: e.clock.Now().Add(2 * time.Hour), IssuedAt: e.clock.Now()}
	if err := e.db.InsertRenewal(context.Background(), prev.Serial, next, nil); err != nil {
		t.Fatal(err)
	}
	res := e.revoke(Request{Serial: prev.Serial, Reason: ReasonKeyCompromise})
	if len(res.Certificates) != 2 {
		t.Fatalf("revoked %d certificates, want the renewal too", len(res.Certificates))
	}
	m := listed(parse(t, e.auth, e.svc.Current().DER))
	if _, ok := m[next.Serial]; !ok || len(m) != 2 {
		t.Fatalf("CRL lists %v, want both", m)
	}
}

// revokedSet revokes one certificate per allowed reason plus a renewal
// chain and returns them by serial.
func revokedSet(e *env) map[string]*store.Cert {
	out := map[string]*store.Cert{}
	for i, reason := range AllowedReasons {
		c := e.addCert(fmt.Sprintf("h%d.covalent.example.net", i), time.Duration(i+1)*time.Hour)
		e.clock.Advance(time.Second)
		res := e.revoke(Request{Serial: c.Serial, Reason: reason, Comment: "test"})
		out[c.Serial] = res.Certificates[0]
	}
	// A serial with a leading zero byte and one with the top bit set.
	for _, serial := range []string{"00" + randomSerial(e.t)[2:], "ff" + randomSerial(e.t)[2:]} {
		c := addCertTo(e.t, e.db, serial, "edge.covalent.example.net", e.clock.Now(), time.Hour)
		res := e.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise})
		out[c.Serial] = res.Certificates[0]
	}
	return out
}

func TestCRLContents(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Validity = 6 * time.Hour })
	var numbers []int64
	e.svc.onBuild = func(c *CRL) { numbers = append(numbers, c.Number) }
	revoked := revokedSet(e)
	for i, n := range numbers {
		if n != int64(i+2) {
			t.Fatalf("CRL numbers %v, want 2, 3, ... one per revocation", numbers)
		}
	}
	crl := e.svc.Current()
	rl := parse(t, e.auth, crl.DER)
	if rl.Number.Int64() != crl.Number || crl.Number != int64(len(revoked)+1) {
		t.Fatalf("CRL number %v / %d, want %d", rl.Number, crl.Number, len(revoked)+1)
	}
	now := e.clock.Now()
	if !rl.ThisUpdate.Equal(now) || !rl.NextUpdate.Equal(now.Add(6*time.Hour)) || !crl.ThisUpdate.Equal(now) {
		t.Fatalf("thisUpdate %v nextUpdate %v, clock %v", rl.ThisUpdate, rl.NextUpdate, now)
	}
	if !bytes.Equal(rl.AuthorityKeyId, e.auth.Intermediate().SubjectKeyId) {
		t.Fatalf("AKI %x, intermediate SKI %x", rl.AuthorityKeyId, e.auth.Intermediate().SubjectKeyId)
	}
	if !bytes.Equal(rl.RawIssuer, e.auth.Intermediate().RawSubject) {
		t.Fatal("issuer is not the intermediate's subject")
	}
	m := listed(rl)
	if len(m) != len(revoked) || crl.Entries != len(revoked) {
		t.Fatalf("CRL lists %d (Entries %d), want %d", len(m), crl.Entries, len(revoked))
	}
	for serial, c := range revoked {
		got, ok := m[serial]
		if !ok {
			t.Fatalf("%s not listed", serial)
		}
		if got.ReasonCode != c.Revocation.Reason {
			t.Errorf("%s reason %d, want %d", serial, got.ReasonCode, c.Revocation.Reason)
		}
		if !got.RevocationTime.Equal(c.Revocation.At.Truncate(time.Second)) {
			t.Errorf("%s revoked at %v, want %v", serial, got.RevocationTime, c.Revocation.At)
		}
		hasReasonExt := false
		for _, ext := range got.Extensions {
			if ext.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 21}) {
				hasReasonExt = true
			}
		}
		if hasReasonExt != (c.Revocation.Reason != ReasonUnspecified) {
			t.Errorf("%s (reason %d): reasonCode extension present = %v", serial, c.Revocation.Reason, hasReasonExt)
		}
	}
	exts := map[string]bool{}
	for _, ext := range rl.Extensions {
		exts[ext.Id.String()] = true
	}
	if !exts["2.5.29.35"] || !exts["2.5.29.20"] || len(exts) != 2 {
		t.Fatalf("CRL extensions %v, want AKI and CRL number", exts)
	}
}

func TestCRLLintsClean(t *testing.T) {
	e := newEnv(t, nil)
	if err := certlint.CRL(e.svc.Current().DER); err != nil {
		t.Fatalf("empty CRL: %v", err)
	}
	revokedSet(e)
	if err := certlint.CRL(e.svc.Current().DER); err != nil {
		t.Fatalf("CRL: %v", err)
	}
}

func TestOpenSSLParsesCRL(t *testing.T) {
	openssl := realtools.OpenSSL(t)
	e := newEnv(t, nil)
	revoked := revokedSet(e)
	crl := e.svc.Current()
	dir := t.TempDir()
	der := filepath.Join(dir, "crl.der")
	if err := os.WriteFile(der, crl.DER, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "crl", "-inform", "DER", "-in", der, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"Certificate Revocation List (CRL):", "Version 2 (0x1)",
		"X509v3 Authority Key Identifier", "X509v3 CRL Number",
		"Key Compromise", "Superseded", "Affiliation Changed", "Cessation Of Operation", "Privilege Withdrawn",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl output lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`X509v3 CRL Number:\s*\n\s*(\d+)`).FindStringSubmatch(text); m == nil || m[1] != fmt.Sprint(crl.Number) {
		t.Errorf("openssl reads CRL number %v, want %d", m, crl.Number)
	}
	if n := strings.Count(text, "Serial Number:"); n != len(revoked) {
		t.Errorf("openssl lists %d serials, want %d", n, len(revoked))
	}
	for serial := range revoked {
		if !strings.Contains(strings.ToUpper(text), strings.ToUpper(strings.TrimLeft(serial, "0"))) {
			t.Errorf("openssl output lacks serial %s", serial)
		}
	}
	// The PEM form parses too, and verifies against the intermediate.
	pemPath, caPath := filepath.Join(dir, "crl.pem"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pemPath, crl.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, e.auth.ChainPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(openssl, "crl", "-in", pemPath, "-CAfile", caPath, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl -CAfile: %v\n%s", err, out)
	}
}

func TestExpiredRevokedDropOut(t *testing.T) {
	e := newEnv(t, nil)
	short := e.addCert("short.covalent.example.net", time.Hour)
	long := e.addCert("long.covalent.example.net", 48*time.Hour)
	e.revoke(Request{Serial: short.Serial, Reason: ReasonKeyCompromise})
	e.revoke(Request{Serial: long.Serial, Reason: ReasonKeyCompromise})
	if n := len(listed(parse(t, e.auth, e.svc.Current().DER))); n != 2 {
		t.Fatalf("CRL lists %d, want 2", n)
	}
	e.clock.Advance(time.Hour) // short expires exactly now
	crl, err := e.svc.Rebuild(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := listed(parse(t, e.auth, crl.DER))
	if _, ok := m[short.Serial]; ok || len(m) != 1 || crl.Entries != 1 {
		t.Fatalf("after expiry the CRL lists %v", m)
	}
	// Revoking the expired certificate again needs no CRL.
	number := crlNumber(t, e.db)
	if res := e.revoke(Request{Serial: short.Serial}); res.Changed || res.CRLNumber != crl.Number {
		t.Fatalf("revoke expired again: %+v", res)
	}
	if crlNumber(t, e.db) != number {
		t.Fatal("a CRL was built for an expired certificate")
	}
}

func TestConcurrentRevocationsCoalesce(t *testing.T) {
	const n = 500
	e := newEnv(t, func(c *Config) { c.Coalesce = 0 }) // the default
	certs := make([]*store.Cert, n)
	for i := range certs {
		certs[i] = e.addCert(fmt.Sprintf("c%d.covalent.example.net", i), time.Hour)
	}
	var mu sync.Mutex
	built := map[int64]map[string]x509.RevocationListEntry{}
	e.svc.onBuild = func(c *CRL) {
		m := listed(parse(t, e.auth, c.DER))
		mu.Lock()
		built[c.Number] = m
		mu.Unlock()
	}
	before := crlNumber(t, e.db)
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range certs {
		wg.Go(func() {
			results[i], errs[i] = e.svc.Revoke(context.Background(), Request{Serial: certs[i].Serial, Reason: ReasonKeyCompromise, By: "admin:test"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("revoke %d: %v", i, err)
		}
		// The CRL Revoke reported lists the certificate.
		if _, ok := built[results[i].CRLNumber][certs[i].Serial]; !ok {
			t.Fatalf("CRL %d, reported for %s, does not list it", results[i].CRLNumber, certs[i].Serial)
		}
	}
	final := listed(parse(t, e.auth, e.svc.Current().DER))
	if len(final) != n {
		t.Fatalf("final CRL lists %d, want %d", len(final), n)
	}
	crls := crlNumber(t, e.db) - before
	t.Logf("%d concurrent revocations -> %d CRLs", n, crls)
	if crls > 10 || int64(len(built)) != crls {
		t.Fatalf("%d CRLs built (%d seen) for %d revocations", crls, len(built), n)
	}
}

func TestRestartKeepsCRL(t *testing.T) {
	e := newEnv(t, nil)
	c := e.addCert("r.covalent.example.net", time.Hour)
	e.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise})
	before := e.svc.Current()

	e.restart()
	after := e.svc.Current()
	if after.Number != before.Number || !bytes.Equal(after.DER, before.DER) || !bytes.Equal(after.PEM, before.PEM) || after.Entries != 1 {
		t.Fatalf("after restart CRL %d (%d entries), want the same bytes as %d", after.Number, after.Entries, before.Number)
	}
	if !after.ThisUpdate.Equal(before.ThisUpdate) || !after.NextUpdate.Equal(before.NextUpdate) {
		t.Fatal("after restart the validity differs")
	}
	// The revoked set survived: revoking again changes nothing.
	if res := e.revoke(Request{Serial: c.Serial}); res.Changed || res.CRLNumber != before.Number {
		t.Fatalf("revoke after restart: %+v", res)
	}
	d := e.addCert("d.covalent.example.net", time.Hour)
	if res := e.revoke(Request{Serial: d.Serial}); res.CRLNumber != before.Number+1 {
		t.Fatalf("next CRL %d, want %d", res.CRLNumber, before.Number+1)
	}
}

func TestRestartRebuildsWhenNeeded(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
	}{
		{"stale", func(e *env) { e.clock.Advance(DefaultValidity * 2 / 5) }},
		{"revoked behind its back", func(e *env) {
			c := e.addCert("b.covalent.example.net", time.Hour)
			if _, _, err := e.db.Revoke(context.Background(), c.Serial, store.Revocation{At: e.clock.Now(), Reason: 1}, nil); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"other CA", func(e *env) { e.cfg.Signer = newAuthority(e.t, "") }},
		{"number burned by a crash", func(e *env) {
			if _, err := e.db.NextCRLNumber(context.Background()); err != nil {
				e.t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.addCert("a.covalent.example.net", 48*time.Hour)
			e.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise})
			before := e.svc.Current()
			tt.setup(e)
			e.restart()
			after := e.svc.Current()
			rl := x509ParseOK(t, e, after.DER)
			if tt.name == "number burned by a crash" {
				// A burned number alone does not force a rebuild, and the
				// next CRL skips it.
				if after.Number != before.Number {
					t.Fatalf("CRL %d after restart, want %d kept", after.Number, before.Number)
				}
				d := e.addCert("d.covalent.example.net", time.Hour)
				if res := e.revoke(Request{Serial: d.Serial}); res.CRLNumber != before.Number+2 {
					t.Fatalf("next CRL %d, want %d", res.CRLNumber, before.Number+2)
				}
				return
			}
			if after.Number <= before.Number {
				t.Fatalf("CRL number went from %d to %d", before.Number, after.Number)
			}
			if _, ok := listed(rl)[c.Serial]; !ok {
				t.Fatal("rebuilt CRL misses the revoked certificate")
			}
			if tt.name == "revoked behind its back" && len(rl.RevokedCertificateEntries) != 2 {
				t.Fatalf("rebuilt CRL lists %d, want 2", len(rl.RevokedCertificateEntries))
			}
		})
	}
}

func x509ParseOK(t *testing.T, e *env, der []byte) *x509.RevocationList {
	t.Helper()
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(e.cfg.Signer.Intermediate()); err != nil {
		t.Fatal(err)
	}
	return rl
}

func TestTickRefreshesBeforeHalfValidity(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Validity = 10 * time.Hour })
	first := e.svc.Current()
	tests := []struct {
		advance time.Duration
		rebuilt bool
	}{
		{0, false},
		{3*time.Hour + 59*time.Minute, false},
		{time.Minute, true}, // 4h: 40% of 10h
		{time.Hour, false},
		{3 * time.Hour, true},
	}
	number := first.Number
	for i, tt := range tests {
		e.clock.Advance(tt.advance)
		now := e.clock.Now()
		rebuilt, err := e.svc.Tick(context.Background(), now)
		if err != nil || rebuilt != tt.rebuilt {
			t.Fatalf("step %d at +%v: Tick = %v, %v; want %v", i, now.Sub(first.ThisUpdate), rebuilt, err, tt.rebuilt)
		}
		cur := e.svc.Current()
		if tt.rebuilt {
			number++
			if cur.Number != number || !cur.ThisUpdate.Equal(now) || !cur.NextUpdate.Equal(now.Add(10*time.Hour)) {
				t.Fatalf("step %d: CRL %d %v..%v", i, cur.Number, cur.ThisUpdate, cur.NextUpdate)
			}
			if !now.Before(cur.ThisUpdate.Add(5 * time.Hour)) {
				t.Fatal("refresh not before half the validity")
			}
		} else if cur.Number != number {
			t.Fatalf("step %d: CRL %d, want %d", i, cur.Number, number)
		}
	}
}

// recorder is a Publisher that records what it is handed.
type recorder struct {
	mu       sync.Mutex
	got      []*CRL
	inFlight atomic.Int32
	overlap  atomic.Bool
	ch       chan *CRL
}

func newRecorder() *recorder { return &recorder{ch: make(chan *CRL, 1000)} }

func (r *recorder) PublishCRL(ctx context.Context, crl *CRL) {
	if r.inFlight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.inFlight.Add(-1)
	r.mu.Lock()
	r.got = append(r.got, crl)
	r.mu.Unlock()
	r.ch <- crl
}

// next waits for the next published CRL (the timeout only guards against
// a hung test; nothing waits on a deadline).
func (r *recorder) next(t *testing.T) *CRL {
	t.Helper()
	select {
	case c := <-r.ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no CRL published")
		return nil
	}
}

func TestPublisher(t *testing.T) {
	e := newEnv(t, nil)
	r := newRecorder()
	e.svc.SetPublisher(r)
	if c := r.next(t); c != e.svc.Current() {
		t.Fatalf("SetPublisher published CRL %d, want the current one", c.Number)
	}
	c := e.addCert("p.covalent.example.net", time.Hour)
	res := e.revoke(Request{Serial: c.Serial, Reason: ReasonKeyCompromise})
	got := r.next(t)
	if got.Number != res.CRLNumber {
		t.Fatalf("published CRL %d, revoke reported %d", got.Number, res.CRLNumber)
	}
	if _, ok := listed(parse(t, e.auth, got.DER))[c.Serial]; !ok {
		t.Fatal("published CRL does not list the revoked certificate")
	}
	// Many CRLs in a row: the newest is always published, never two calls at once.
	for range 20 {
		if _, err := e.svc.Rebuild(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := e.svc.Current().Number
	for c := r.next(t); c.Number != want; c = r.next(t) {
	}
	if r.overlap.Load() {
		t.Fatal("PublishCRL was called concurrently with itself")
	}
	// Each CRL once, in increasing order: synchronous hand-offs, no queue
	// on this side (the Publisher keeps the one latest-wins queue).
	r.mu.Lock()
	all := append([]*CRL(nil), r.got...)
	r.mu.Unlock()
	for i := 1; i < len(all); i++ {
		if all[i].Number <= all[i-1].Number {
			t.Fatalf("published CRL %d after %d", all[i].Number, all[i-1].Number)
		}
	}
	if len(all) != 2+20 {
		t.Fatalf("%d CRLs published, want each of the %d built once", len(all), 2+20)
	}
	// A new Publisher (a new leader term) is handed the current CRL.
	r2 := newRecorder()
	e.svc.SetPublisher(r2)
	if c := r2.next(t); c != e.svc.Current() {
		t.Fatalf("SetPublisher again published CRL %d, want the current %d", c.Number, e.svc.Current().Number)
	}
}

func TestRunRefreshesByTheClock(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Validity = time.Hour })
	r := newRecorder()
	e.svc.SetPublisher(r)
	first := r.next(t)
	e.clock.Advance(30 * time.Minute) // past 40%: due
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.svc.Run(ctx) }()
	got := r.next(t)
	if got.Number != first.Number+1 || !got.ThisUpdate.Equal(e.clock.Now()) {
		t.Fatalf("Run published CRL %d at %v, want %d at %v", got.Number, got.ThisUpdate, first.Number+1, e.clock.Now())
	}
	cancel()
	<-done
}

func TestRevokeAfterClose(t *testing.T) {
	e := newEnv(t, nil)
	c := e.addCert("late.covalent.example.net", time.Hour)
	e.svc.Close()
	_, err := e.svc.Revoke(context.Background(), Request{Serial: c.Serial, By: "admin:test"})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Revoke after Close: %v, want ErrClosed", err)
	}
	if e.svc.Current() == nil {
		t.Fatal("Current is nil after Close")
	}
}
