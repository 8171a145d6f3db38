package anchors

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/lanyard/lanyard/anchors/emulator"
)

func TestSyncCreatesThenNoOp(t *testing.T) {
	f := newFixture(t)
	root := newRoot(t, "Lanyard Root")
	cfg := f.cfg
	cfg.Create = true
	s := f.syncer(t, cfg, staticSource{roots: []*x509.Certificate{root.cert}})
	ctx := context.Background()

	rep, err := s.Sync(ctx, false)
	must(t, err)
	if !rep.Created || !rep.ProfileCreated || rep.TrustAnchorARN == "" || rep.ProfileARN == "" {
		t.Fatalf("first sync: %+v", rep)
	}
	anchors := f.srv.TrustAnchors()
	if len(anchors) != 1 || !anchors[0].Enabled || anchors[0].Arn != rep.TrustAnchorARN ||
		len(anchors[0].Certificates) != 1 || !anchors[0].Certificates[0].Equal(root.cert) {
		t.Fatalf("emulator anchors after create: %+v", anchors)
	}

	// In sync: only a GetTrustAnchor, no update, no create.
	f.cnt.reset()
	rep, err = s.Sync(ctx, false)
	must(t, err)
	if !rep.InSync() || f.cnt.total() != 1 || f.cnt.count("GET trustanchor") != 1 {
		t.Fatalf("second sync: in sync %v, requests %v", rep.InSync(), f.cnt.reqs)
	}

	// Persisted: a new Syncer on the same store finds the anchor again.
	st, err := LoadStatus(f.db)
	must(t, err)
	if st.TrustAnchorARN != rep.TrustAnchorARN || st.ProfileARN != rep.ProfileARN || st.LastResult != "in sync" || !st.Created {
		t.Fatalf("persisted status %+v", st)
	}
	s.Close()
	s2 := f.syncer(t, cfg, staticSource{roots: []*x509.Certificate{root.cert}})
	f.cnt.reset()
	rep, err = s2.Sync(ctx, false)
	must(t, err)
	if !rep.InSync() || f.cnt.count("POST trustanchors") != 0 || len(f.srv.TrustAnchors()) != 1 {
		t.Fatalf("after restart: %+v, requests %v", rep, f.cnt.reqs)
	}

	// The anchor disappears (an emulator restart): lanyard made it, so it
	// makes it again.
	f2 := newFixture(t)
	cfg2 := f2.cfg
	cfg2.Create = true
	f2.db = f.db
	s3 := f2.syncer(t, cfg2, staticSource{roots: []*x509.Certificate{root.cert}})
	rep, err = s3.Sync(ctx, false)
	must(t, err)
	if !rep.Created || rep.TrustAnchorARN == st.TrustAnchorARN || len(f2.srv.TrustAnchors()) != 1 {
		t.Fatalf("re-create: %+v", rep)
	}
}

func TestSyncNoAnchorWithoutCreate(t *testing.T) {
	f := newFixture(t)
	s := f.syncer(t, f.cfg, staticSource{roots: []*x509.Certificate{newRoot(t, "R").cert}})
	_, err := s.Sync(context.Background(), false)
	if !errors.Is(err, ErrNoTrustAnchor) || f.cnt.total() != 0 {
		t.Fatalf("err %v, requests %v", err, f.cnt.reqs)
	}
}

func TestSyncBundle(t *testing.T) {
	a, b, c := newRoot(t, "Root A"), newRoot(t, "Root B"), newRoot(t, "Root C")
	foreign, foreign2 := newRoot(t, "Someone Else"), newRoot(t, "Someone Else 2")
	tests := []struct {
		name     string
		bundle   []byte // the anchor's bundle before
		disabled bool
		roots    []*x509.Certificate
		force    bool
		dryRun   bool
		wantErr  error
		want     []*x509.Certificate // the anchor's bundle after
		updates  int                 // UpdateTrustAnchor calls
		enables  int
		missing  int
		foreign  int
		removed  int
	}{
		{name: "in sync", bundle: pemOf(a.cert), roots: []*x509.Certificate{a.cert}, want: []*x509.Certificate{a.cert}},
		{name: "same certificates, other text", roots: []*x509.Certificate{a.cert, b.cert},
			bundle: append(append([]byte("# rotated bundle\n\n"), pemOf(b.cert)...), append([]byte("\n\n"), pemOf(a.cert)...)...),
			want:   []*x509.Certificate{b.cert, a.cert}},
		{name: "rotation adds the new root", bundle: pemOf(a.cert), roots: []*x509.Certificate{a.cert, b.cert},
			want: []*x509.Certificate{a.cert, b.cert}, updates: 1, missing: 1},
		{name: "drift: altered out of band", bundle: pemOf(b.cert), roots: []*x509.Certificate{a.cert}, force: true,
			want: []*x509.Certificate{a.cert}, updates: 1, missing: 1, foreign: 1, removed: 1},
		{name: "foreign kept without force", bundle: pemOf(foreign.cert), roots: []*x509.Certificate{a.cert},
			wantErr: ErrForeignCertificate, want: []*x509.Certificate{a.cert, foreign.cert}, updates: 1, missing: 1, foreign: 1},
		{name: "foreign and no room", bundle: pemOf(foreign.cert, foreign2.cert), roots: []*x509.Certificate{a.cert},
			wantErr: ErrForeignCertificate, want: []*x509.Certificate{foreign.cert, foreign2.cert}, missing: 1, foreign: 2},
		{name: "foreign replaced with force", bundle: pemOf(foreign.cert, foreign2.cert), roots: []*x509.Certificate{a.cert}, force: true,
			want: []*x509.Certificate{a.cert}, updates: 1, missing: 1, foreign: 2, removed: 2},
		{name: "in sync but foreign kept", bundle: pemOf(a.cert, foreign.cert), roots: []*x509.Certificate{a.cert},
			wantErr: ErrForeignCertificate, want: []*x509.Certificate{a.cert, foreign.cert}, foreign: 1},
		{name: "disabled anchor is enabled", bundle: pemOf(a.cert), disabled: true, roots: []*x509.Certificate{a.cert},
			want: []*x509.Certificate{a.cert}, enables: 1},
		{name: "dry run changes nothing", bundle: pemOf(foreign.cert), disabled: true, roots: []*x509.Certificate{a.cert, b.cert}, force: true, dryRun: true,
			want: []*x509.Certificate{foreign.cert}, missing: 2, foreign: 1, removed: 1},
		{name: "three roots", bundle: pemOf(a.cert), roots: []*x509.Certificate{a.cert, b.cert, c.cert},
			wantErr: ErrBundleTooLarge, want: []*x509.Certificate{a.cert}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			arn, err := f.srv.SeedTrustAnchor(emulator.TrustAnchorSpec{BundlePEM: tt.bundle, Disabled: tt.disabled})
			must(t, err)
			cfg := f.cfg
			cfg.TrustAnchorARN, cfg.Force = arn, tt.force
			s := f.syncer(t, cfg, staticSource{roots: tt.roots})
			rep, err := s.Sync(context.Background(), tt.dryRun)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Sync error %v, want %v", err, tt.wantErr)
			}
			got := f.srv.TrustAnchors()[0]
			if len(got.Certificates) != len(tt.want) {
				t.Fatalf("anchor holds %d certificates, want %d", len(got.Certificates), len(tt.want))
			}
			for i := range tt.want {
				if !got.Certificates[i].Equal(tt.want[i]) {
					t.Fatalf("anchor certificate %d is %s, want %s", i, got.Certificates[i].Subject, tt.want[i].Subject)
				}
			}
			if n := f.cnt.count("PATCH trustanchor"); n != tt.updates {
				t.Errorf("UpdateTrustAnchor calls %d, want %d", n, tt.updates)
			}
			if n := f.cnt.count("POST trustanchor enable"); n != tt.enables {
				t.Errorf("EnableTrustAnchor calls %d, want %d", n, tt.enables)
			}
			if tt.dryRun && got.Enabled != !tt.disabled {
				t.Errorf("dry run changed enabled to %v", got.Enabled)
			}
			if tt.wantErr == ErrBundleTooLarge {
				if rep != nil || f.cnt.total() != 0 {
					t.Fatalf("3 roots: report %v, requests %v", rep, f.cnt.reqs)
				}
				return
			}
			if len(rep.Missing) != tt.missing || len(rep.Foreign) != tt.foreign || len(rep.Removed) != tt.removed {
				t.Fatalf("report missing %d foreign %d removed %d, want %d %d %d\n%s",
					len(rep.Missing), len(rep.Foreign), len(rep.Removed), tt.missing, tt.foreign, tt.removed, rep)
			}
			if tt.dryRun {
				out := rep.String()
				for _, w := range []string{"would update", "would enable", "+ CN=Root A", "+ CN=Root B", "- CN=Someone Else"} {
					if !strings.Contains(out, w) {
						t.Errorf("dry-run report lacks %q:\n%s", w, out)
					}
				}
				if _, err := LoadStatus(f.db); !errors.Is(err, ErrNoStatus) {
					t.Errorf("dry run persisted a status: %v", err)
				}
				return
			}
			st := s.Status()
			if tt.foreign-tt.removed != len(st.Foreign) || st.LastSync.IsZero() {
				t.Errorf("status %+v", st)
			}
			if tt.wantErr != nil && !strings.Contains(st.LastError, "Someone Else") {
				t.Errorf("status does not name the foreign certificate: %q", st.LastError)
			}
		})
	}
}

func TestSyncErrors(t *testing.T) {
	root := newRoot(t, "Root A")
	tests := []struct {
		name      string
		setup     func(t *testing.T, f *fixture, cfg *Config)
		retryable bool
		want      string
		maxReqs   int
		ok        bool
	}{
		{name: "throttled three times then succeeds", ok: true, maxReqs: 4, setup: func(t *testing.T, f *fixture, cfg *Config) {
			f.srv.ThrottleNext(3)
		}},
		{name: "unreachable endpoint", retryable: true, want: "connection refused", maxReqs: 5, setup: func(t *testing.T, f *fixture, cfg *Config) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			must(t, err)
			cfg.Endpoint = "http://" + ln.Addr().String()
			ln.Close()
		}},
		{name: "wrong secret is final", want: "InvalidSignatureException", maxReqs: 1, setup: func(t *testing.T, f *fixture, cfg *Config) {
			cfg.Credentials = credentials.NewStaticCredentialsProvider(f.srv.AccessKeyID(), "not-the-secret", "")
		}},
		{name: "unknown key is final", want: "UnrecognizedClientException", maxReqs: 1, setup: func(t *testing.T, f *fixture, cfg *Config) {
			cfg.Credentials = credentials.NewStaticCredentialsProvider("AKIAWRONG", "x", "")
		}},
		{name: "anchor not found", want: "trust anchor not found", maxReqs: 1, setup: func(t *testing.T, f *fixture, cfg *Config) {
			cfg.TrustAnchorARN = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/00000000-0000-4000-8000-000000000000"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			arn, err := f.srv.SeedTrustAnchor(emulator.TrustAnchorSpec{BundlePEM: pemOf(root.cert)})
			must(t, err)
			cfg := f.cfg
			cfg.TrustAnchorARN = arn
			tt.setup(t, f, &cfg)
			s := f.syncer(t, cfg, staticSource{roots: []*x509.Certificate{root.cert}})
			start := time.Now()
			_, err = s.Sync(context.Background(), false)
			if time.Since(start) > 10*time.Second {
				t.Errorf("Sync took %v", time.Since(start))
			}
			if n := f.cnt.total(); n > tt.maxReqs {
				t.Errorf("%d requests, want at most %d: %v", n, tt.maxReqs, f.cnt.reqs)
			}
			if tt.ok {
				must(t, err)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
			if Retryable(err) != tt.retryable {
				t.Errorf("Retryable(%v) = %v", err, !tt.retryable)
			}
			if st := s.Status(); st.LastResult != "error" || st.LastError == "" {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestReportString(t *testing.T) {
	a := certInfo(newRoot(t, "Root A").cert)
	r := &Report{TrustAnchorARN: "arn:x", Current: []CertInfo{a}}
	if !strings.Contains(r.String(), "in sync") || !bytes.Contains([]byte(r.String()), []byte("Root A")) {
		t.Fatal(r.String())
	}
}
