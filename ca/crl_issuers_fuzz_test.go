package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
)

// crlIssuer is one intermediate that signs CRLs: the current one or a
// retired one whose key is kept.
type crlIssuer struct {
	cert   *x509.Certificate
	signer crypto.Signer
	sigAlg x509.SignatureAlgorithm
}

// FuzzCRLSeveralIssuers checks the CRLs of a CA rotated twice (three
// intermediates: the current one and two retired ones with their keys): SignCRL and SignRetiredCRLs sign the
// same random entries (the fuzz bytes as in FuzzSignCRLMatchesX509), and
// every CRL must
//   - be the TBSCertList x509.CreateRevocationList writes for its issuer,
//   - name its own issuer (raw subject and authority key identifier) and
//     verify with its key, and with no other issuer's key,
//   - list exactly the request's entries, in order, with times cut to the
//     second and the reasons asked for,
//   - carry the same CRL number and validity as the others.
func FuzzCRLSeveralIssuers(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ca")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := Init(InitOptions{Dir: dir, Now: func() time.Time { return t0 }}); err != nil {
		f.Fatal(err)
	}
	// Two rotations, so that two retired intermediates sign CRLs: the
	// first one's key is set aside during the second rotation (which
	// refuses while a retired key is kept, since a trust anchor holds two
	// CRLs) and put back, so the encoder is tested with three issuers.
	var aside [2]string
	for i := 1; i <= 2; i++ {
		at := t0.Add(time.Duration(i) * 30 * 24 * time.Hour)
		if i == 2 {
			st, err := ReadState(dir)
			if err != nil {
				f.Fatal(err)
			}
			aside[0] = filepath.Join(dir, RetiredDir, lanyardv1.FormatSerial(st.Retired[0].SerialNumber)+".key")
			aside[1] = aside[0] + ".aside"
			if err := os.Rename(aside[0], aside[1]); err != nil {
				f.Fatal(err)
			}
		}
		if _, err := RotateIntermediate(RotateOptions{Dir: dir, Now: func() time.Time { return at }}); err != nil {
			f.Fatalf("rotation %d: %v", i, err)
		}
	}
	if err := os.Rename(aside[1], aside[0]); err != nil {
		f.Fatal(err)
	}
	a, err := Load(LoadOptions{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { a.Close() })
	if len(a.retiredSigners) != 2 {
		f.Fatalf("%d retired intermediates with keys after two rotations, want 2", len(a.retiredSigners))
	}
	issuers := []crlIssuer{{a.intermediate, a.signer, a.sigAlg}}
	for _, r := range a.retiredSigners {
		issuers = append(issuers, crlIssuer{r.cert, r.signer, r.sigAlg})
	}

	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC).Unix()
	f.Add(int64(1), now, int64(86400), []byte{})
	f.Add(int64(7), now, int64(3600), []byte{16, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 0, 0, 60, 1,
		1, 0, 0, 0, 0, 0, 0, 20, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0xff, 0xff, 0xff, 0xff, 10})
	f.Add(int64(1<<40), time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC).Unix(), int64(2), []byte{3, 1, 2, 3, 0, 0, 0, 0, 5})
	f.Add(int64(0), time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), int64(0), []byte{0, 0, 0, 0, 1, 4})
	f.Fuzz(func(t *testing.T, number, thisUnix, validity int64, entries []byte) {
		this := time.Unix(thisUnix, 0).UTC()
		req := CRLRequest{Number: number, ThisUpdate: this, NextUpdate: this.Add(time.Duration(validity) * time.Second)}
		type want struct {
			serial *big.Int
			at     time.Time
			reason int
		}
		var wants []want
		for len(entries) > 0 {
			n := int(entries[0]) % 21
			if len(entries) < 1+n+5 {
				break
			}
			serial := new(big.Int).SetBytes(entries[1 : 1+n])
			back := time.Duration(binary.BigEndian.Uint32(entries[1+n:]))*time.Second + time.Duration(entries[1+n+4])*time.Millisecond
			reason := int(entries[1+n+4]) % 11
			entries = entries[1+n+5:]
			e, err := NewRevokedCert(serial, this.Add(-back), reason)
			if err != nil {
				t.Fatalf("NewRevokedCert(%x, %d): %v", serial, reason, err)
			}
			req.Entries = append(req.Entries, e)
			wants = append(wants, want{serial, this.Add(-back).Truncate(time.Second).UTC(), reason})
		}
		cur, err := a.SignCRL(req)
		retired, rerr := a.SignRetiredCRLs(req)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("current intermediate: %v; retired ones: %v", err, rerr)
		}
		if number < 0 {
			if err == nil {
				t.Fatal("a negative CRL number was signed")
			}
			return
		}
		// x509 is the reference: where it refuses (a time it cannot
		// encode), ours must refuse too.
		tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: req.ThisUpdate, NextUpdate: req.NextUpdate}
		for _, w := range wants {
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
				x509.RevocationListEntry{SerialNumber: w.serial, RevocationTime: w.at, ReasonCode: w.reason})
		}
		tmpl.SignatureAlgorithm = issuers[0].sigAlg
		_, refErr := x509.CreateRevocationList(rand.Reader, tmpl, issuers[0].cert, issuers[0].signer)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("SignCRL: %v; x509: %v", err, refErr)
		}
		if err != nil {
			return
		}
		if len(retired) != len(issuers)-1 {
			t.Fatalf("%d retired CRLs for %d retired intermediates", len(retired), len(issuers)-1)
		}
		ders := [][]byte{cur}
		for i, r := range retired {
			if r.Issuer != issuers[i+1].cert {
				t.Fatalf("retired CRL %d names issuer %q, want %q", i, r.Issuer.Subject, issuers[i+1].cert.Subject)
			}
			ders = append(ders, r.DER)
		}
		for i, der := range ders {
			is := issuers[i]
			got, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatalf("issuer %d: parse: %v", i, err)
			}
			tmpl.SignatureAlgorithm = is.sigAlg
			ref, err := x509.CreateRevocationList(rand.Reader, tmpl, is.cert, is.signer)
			if err != nil {
				t.Fatalf("issuer %d: x509 refused what issuer 0 signed: %v", i, err)
			}
			refl, err := x509.ParseRevocationList(ref)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.RawTBSRevocationList, refl.RawTBSRevocationList) {
				t.Fatalf("issuer %d: TBSCertList differs from x509's:\nours: %x\nx509: %x", i, got.RawTBSRevocationList, refl.RawTBSRevocationList)
			}
			if !bytes.Equal(got.RawIssuer, is.cert.RawSubject) || !bytes.Equal(got.AuthorityKeyId, is.cert.SubjectKeyId) {
				t.Fatalf("issuer %d: CRL names issuer %x (AKI %x), want %x (%x)", i, got.RawIssuer, got.AuthorityKeyId, is.cert.RawSubject, is.cert.SubjectKeyId)
			}
			for j, other := range issuers {
				if err := got.CheckSignatureFrom(other.cert); (err == nil) != (i == j) {
					t.Fatalf("CRL of issuer %d checked against issuer %d: %v", i, j, err)
				}
			}
			if got.Number.Cmp(big.NewInt(number)) != 0 || !got.ThisUpdate.Equal(this) || !got.NextUpdate.Equal(req.NextUpdate.Truncate(time.Second)) {
				t.Fatalf("issuer %d: number %v, validity %v–%v; want %d, %v–%v", i, got.Number, got.ThisUpdate, got.NextUpdate, number, this, req.NextUpdate)
			}
			if len(got.RevokedCertificateEntries) != len(wants) {
				t.Fatalf("issuer %d: %d entries, want %d", i, len(got.RevokedCertificateEntries), len(wants))
			}
			for k, e := range got.RevokedCertificateEntries {
				w := wants[k]
				if e.SerialNumber.Cmp(w.serial) != 0 || !e.RevocationTime.Equal(w.at) || e.ReasonCode != w.reason {
					t.Fatalf("issuer %d entry %d: %x at %v reason %d, want %x at %v reason %d", i, k,
						e.SerialNumber, e.RevocationTime, e.ReasonCode, w.serial, w.at, w.reason)
				}
			}
		}
	})
}
