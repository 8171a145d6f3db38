package anchors

import (
	"context"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/revocation"
)

// realCA makes a CA with ca.Init in a temporary folder.
func realCA(t *testing.T) *ca.Authority {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := ca.Init(ca.InitOptions{Dir: dir, Name: "anchors test"})
	must(t, err)
	a, err := ca.Load(ca.LoadOptions{Dir: dir})
	must(t, err)
	t.Cleanup(func() { a.Close() })
	return a
}

// bigCRL signs, with the CA's intermediate, a CRL listing n serials.
func bigCRL(t *testing.T, a *ca.Authority, number int64, n int) *revocation.CRL {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	req := ca.CRLRequest{Number: number, ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour)}
	for i := range n {
		rc, err := ca.NewRevokedCert(new(big.Int).Lsh(big.NewInt(int64(i+1)), 100), now, 0)
		must(t, err)
		req.Entries = append(req.Entries, rc)
	}
	der, err := a.SignCRL(req)
	must(t, err)
	return &revocation.CRL{DER: der, PEM: pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), Number: number,
		ThisUpdate: now, NextUpdate: now.Add(24 * time.Hour), Entries: n}
}

// crlFixture is a fixture with a real CA, its revocation service and a
// Syncer (its API passed through wrap, when set) that created the trust
// anchor.
func crlFixture(t *testing.T, wrap func(API) API) (*fixture, *revocation.Service, *Syncer) {
	t.Helper()
	f := newFixture(t)
	a := realCA(t)
	rev, err := revocation.New(revocation.Config{Store: f.db, Signer: a})
	must(t, err)
	t.Cleanup(func() { rev.Close() })
	cfg := f.cfg
	cfg.Create = true
	var api API
	api, err = NewClient(context.Background(), cfg)
	must(t, err)
	if wrap != nil {
		api = wrap(api)
	}
	s := New(cfg, api, a, f.db, nil, nil)
	t.Cleanup(func() { s.Close() })
	_, err = s.Sync(context.Background(), false)
	must(t, err)
	return f, rev, s
}

func TestPublishCRL(t *testing.T) {
	f, rev, s := crlFixture(t, nil)
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()

	// The first CRL is imported, enabled.
	first := rev.Current()
	rev.SetPublisher(s)
	st, err := s.WaitCRL(wctx, first.Number)
	must(t, err)
	crls := f.srv.CRLs()
	if len(crls) != 1 || !crls[0].Enabled || crls[0].List.Number.Int64() != first.Number || crls[0].TrustAnchorArn != s.TrustAnchorARN() {
		t.Fatalf("after the first CRL: %+v", crls)
	}
	if f.cnt.count("POST crls") != 1 || st.CRLNumber != first.Number || st.CRLPushedAt.IsZero() || st.CRLArn != crls[0].Arn {
		t.Fatalf("requests %v, status %+v", f.cnt.reqs, st)
	}

	// Every later CRL updates the same one.
	for range 3 {
		next, err := rev.Rebuild(ctx)
		must(t, err)
		_, err = s.WaitCRL(wctx, next.Number)
		must(t, err)
	}
	crls = f.srv.CRLs()
	if len(crls) != 1 || crls[0].List.Number.Int64() != rev.Current().Number || f.cnt.count("POST crls") != 1 || f.cnt.count("PATCH crl") != 3 {
		t.Fatalf("after updates: %d CRLs, number %v, requests %v", len(crls), crls[0].List.Number, f.cnt.reqs)
	}

	// Throttling is retried.
	f.srv.ThrottleNext(2)
	next, err := rev.Rebuild(ctx)
	must(t, err)
	_, err = s.WaitCRL(wctx, next.Number)
	must(t, err)

	// Many arriving at once: the newest wins and nothing older lands after it.
	var last *revocation.CRL
	for range 5 {
		last, err = rev.Rebuild(ctx)
		must(t, err)
	}
	_, err = s.WaitCRL(wctx, last.Number)
	must(t, err)
	time.Sleep(100 * time.Millisecond)
	if n := f.srv.CRLs()[0].List.Number.Int64(); n != last.Number {
		t.Fatalf("AWS holds CRL %d, want the newest %d", n, last.Number)
	}

	// Run's periodic check of an up-to-date CRL pushes nothing.
	f.cnt.reset()
	s.checkCRL(ctx)
	if f.cnt.count("PATCH crl") != 0 {
		t.Fatalf("check of an up-to-date CRL pushed: %v", f.cnt.reqs)
	}
}

func TestPublishCRLTooLarge(t *testing.T) {
	f := newFixture(t)
	a := realCA(t)
	cfg := f.cfg
	cfg.Create = true
	s := f.syncer(t, cfg, a)
	ctx := context.Background()
	_, err := s.Sync(ctx, false)
	must(t, err)

	ok := bigCRL(t, a, 1, 10)
	must(t, s.PushCRL(ctx, ok))
	huge := bigCRL(t, a, 2, 9000)
	if len(huge.PEM) <= MaxCRLBytes {
		t.Fatalf("test CRL is only %d bytes", len(huge.PEM))
	}
	f.cnt.reset()
	s.PublishCRL(ctx, huge)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.WaitCRL(wctx, 2)
	if err == nil {
		t.Fatal("a too-large CRL was accepted")
	}
	for _, w := range []string{"9000 revoked certificates", "300000", "CRL number 2"} {
		if !strings.Contains(st.CRLError, w) {
			t.Errorf("status error %q lacks %q", st.CRLError, w)
		}
	}
	if st.CRLNumber != 1 || st.CRLErrorNumber != 2 || f.cnt.total() != 0 {
		t.Fatalf("status %+v, requests %v", st, f.cnt.reqs)
	}
	if err := s.PushCRL(ctx, huge); !errors.Is(err, ErrCRLTooLarge) || Retryable(err) {
		t.Fatalf("PushCRL: %v", err)
	}
	if n := f.srv.CRLs()[0].List.Number.Int64(); n != 1 {
		t.Fatalf("AWS holds CRL %d", n)
	}
	persisted, err := LoadStatus(f.db)
	must(t, err)
	if !strings.Contains(persisted.CRLError, "9000") {
		t.Fatalf("persisted status %+v", persisted)
	}
}

func TestPublishCRLDeniedIsFinal(t *testing.T) {
	f := newFixture(t)
	a := realCA(t)
	arn, _, err := f.srv.Seed(a.Roots(), testRole)
	must(t, err)
	cfg := f.cfg
	cfg.TrustAnchorARN = arn
	cfg.Credentials = credentials.NewStaticCredentialsProvider(f.srv.AccessKeyID(), "wrong", "")
	s := f.syncer(t, cfg, a)
	s.PublishCRL(context.Background(), bigCRL(t, a, 1, 1))
	wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.WaitCRL(wctx, 1)
	if err == nil || !strings.Contains(st.CRLError, "InvalidSignatureException") {
		t.Fatalf("err %v, status %+v", err, st)
	}
	if n := f.cnt.total(); n != 1 {
		t.Fatalf("%d requests for a final error: %v", n, f.cnt.reqs)
	}
}
