package tidy

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
)

var t0 = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

type flagLeader struct{ on atomic.Bool }

func (l *flagLeader) IsLeader() bool { return l.on.Load() }

// newService opens a store holding one certificate that expired 40 days
// before t0 and one valid one, and a Service over it; cfg overrides.
func newService(t *testing.T, override func(*Config)) (*Service, *store.DB) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "lanyard.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for i, na := range []time.Time{t0.Add(-40 * 24 * time.Hour), t0.Add(time.Hour)} {
		c := &store.Cert{Serial: fmt.Sprintf("%032x", i+1), CN: "h.covalent.example.net", Profile: "covalent",
			NotBefore: na.Add(-24 * time.Hour), NotAfter: na, DER: []byte{1}}
		if err := db.InsertCert(context.Background(), c, nil); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Config{Store: db, Retention: Retention{Certs: 30 * 24 * time.Hour, Audit: 400 * 24 * time.Hour},
		Now: func() time.Time { return t0 }}
	if override != nil {
		override(&cfg)
	}
	return New(cfg), db
}

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		dryRun    bool
		retention Retention
		wantCerts int
		wantKept  bool // the expired certificate is still there
		wantAudit int
	}{
		{"dry run counts only", true, Retention{Certs: 30 * 24 * time.Hour}, 1, true, 0},
		{"tidy removes and audits", false, Retention{Certs: 30 * 24 * time.Hour}, 1, false, 1},
		{"longer retention keeps it", false, Retention{Certs: 60 * 24 * time.Hour}, 0, true, 1},
		{"zero retention keeps forever", false, Retention{}, 0, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, db := newService(t, func(c *Config) { c.Retention = tt.retention })
			rep, err := s.Run(context.Background(), "admin:cli", tt.dryRun)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Certs != tt.wantCerts || rep.DryRun != tt.dryRun {
				t.Errorf("report %+v, want %d certificates", rep, tt.wantCerts)
			}
			if _, err := db.GetCert(fmt.Sprintf("%032x", 1)); (err == nil) != tt.wantKept {
				t.Errorf("expired certificate kept=%v, want %v", err == nil, tt.wantKept)
			}
			evs, _, _ := db.ListAudit(store.AuditQuery{Action: "tidy"})
			if len(evs) != tt.wantAudit {
				t.Errorf("%d tidy audit events, want %d", len(evs), tt.wantAudit)
			}
			if len(evs) == 1 && evs[0].Actor != "admin:cli" {
				t.Errorf("audit actor %q", evs[0].Actor)
			}
		})
	}
}

func TestLoopOnlyOnTheLeader(t *testing.T) {
	leader := &flagLeader{}
	s, db := newService(t, func(c *Config) { c.Leader = leader })
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Loop(ctx, 0, tick); close(done) }()
	tidies := func() int {
		evs, _, _ := db.ListAudit(store.AuditQuery{Action: "tidy"})
		return len(evs)
	}
	tick <- t0 // a follower: nothing happens
	tick <- t0 // (the second send returns once the first tick was handled)
	if n := tidies(); n != 0 {
		t.Fatalf("a follower tidied (%d audit events)", n)
	}
	leader.on.Store(true)
	tick <- t0
	tick <- t0
	cancel()
	<-done
	if n := tidies(); n < 1 {
		t.Fatal("the leader did not tidy")
	}
	if _, err := db.GetCert(fmt.Sprintf("%032x", 1)); err == nil {
		t.Fatal("the leader's tidy kept the expired certificate")
	}
	if err := db.CheckIndexes(); err != nil {
		t.Fatal(err)
	}
}
