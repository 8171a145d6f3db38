package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/storetest"
)

// snapshot is every record a store exports, as JSON by key, so that two
// stores compare with reflect.DeepEqual.
type snapshot struct {
	Certs, Tokens, Audit, Sessions, Meta map[string]string
	CRLNumber                            int64
}

func newSnapshot() *snapshot {
	return &snapshot{Certs: map[string]string{}, Tokens: map[string]string{}, Audit: map[string]string{},
		Sessions: map[string]string{}, Meta: map[string]string{}}
}

func js(v any) string { b, _ := json.Marshal(v); return string(b) }

func (s *snapshot) LoadCerts(_ context.Context, cs []*store.Cert) error {
	for _, c := range cs {
		s.Certs[c.Serial] = js(c)
	}
	return nil
}
func (s *snapshot) LoadTokens(_ context.Context, ts []*store.Token) error {
	for _, t := range ts {
		s.Tokens[t.ID] = js(t)
	}
	return nil
}
func (s *snapshot) LoadAudit(_ context.Context, evs []*store.AuditEvent) error {
	for _, ev := range evs {
		s.Audit[ev.ID] = js(ev)
	}
	return nil
}
func (s *snapshot) LoadSessions(_ context.Context, ss map[string]*store.Session) error {
	for k, v := range ss {
		s.Sessions[k] = js(v)
	}
	return nil
}
func (s *snapshot) LoadMeta(_ context.Context, m map[string][]byte) error {
	for k, v := range m {
		s.Meta[k] = string(v)
	}
	return nil
}
func (s *snapshot) LoadCRLNumber(_ context.Context, n int64) error { s.CRLNumber = n; return nil }

func export(t *testing.T, db *store.DB) *snapshot {
	t.Helper()
	s := newSnapshot()
	if err := db.Export(context.Background(), s); err != nil {
		t.Fatalf("export: %v", err)
	}
	return s
}

// failAfter is a Sink that forwards to next and fails its n-th call: an
// interrupted `lanyard store copy`.
type failAfter struct {
	next  store.Sink
	calls int
	n     int
}

var errInterrupted = fmt.Errorf("copy interrupted")

func (f *failAfter) step() error {
	f.calls++
	if f.calls == f.n {
		return errInterrupted
	}
	return nil
}
func (f *failAfter) LoadCerts(ctx context.Context, v []*store.Cert) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.next.LoadCerts(ctx, v)
}
func (f *failAfter) LoadTokens(ctx context.Context, v []*store.Token) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.next.LoadTokens(ctx, v)
}
func (f *failAfter) LoadAudit(ctx context.Context, v []*store.AuditEvent) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.next.LoadAudit(ctx, v)
}
func (f *failAfter) LoadSessions(ctx context.Context, v map[string]*store.Session) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.next.LoadSessions(ctx, v)
}
func (f *failAfter) LoadMeta(ctx context.Context, v map[string][]byte) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.next.LoadMeta(ctx, v)
}
func (f *failAfter) LoadCRLNumber(ctx context.Context, n int64) error {
	if err := f.step(); err != nil {
		return err
	}
	return f.next.LoadCRLNumber(ctx, n)
}

// FuzzStoreCopy builds a random store (certificates, renewals of them,
// revocations, tokens, redemptions, audit events, sessions, settings, CRL
// numbers: ops is read as one operation per byte, its argument the next
// byte), copies it into a new store the way `lanyard store copy` does
// (Export into the destination's Sink; when interrupt is non-zero the
// first copy fails at that Sink call and is run again, as the command's
// doc says to), and compares:
//   - the destination exports exactly the source's records, and its
//     indexes are consistent;
//   - copying once more changes nothing;
//   - the destination behaves as the source: the same revoked set and
//     CRL number, the same serials by CN, and revoking the same
//     certificate revokes the same records (its renewals included).
func FuzzStoreCopy(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 0, 2, 0, 3, 4, 4, 1, 5, 2, 6, 0, 7, 3}, uint8(0), uint8(0))
	f.Add([]byte{0, 0xf0, 1, 0x10, 1, 0x01, 2, 1}, uint8(2), uint8(1))
	f.Add([]byte{0, 0x80, 1, 0x00, 1, 0xff, 1, 0x40, 3, 1, 4, 1, 6, 6}, uint8(0), uint8(3))
	f.Add([]byte{3, 1, 4, 0, 4, 0, 5, 9, 5, 9, 7, 7, 6, 1}, uint8(0), uint8(5))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(t *testing.T, name string) *store.DB {
		db, err := store.Open(filepath.Join(t.TempDir(), name), store.Options{NoBackup: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	f.Fuzz(func(t *testing.T, ops []byte, revokeAt, interrupt uint8) {
		if len(ops) > 64 { // 32 operations: each is a durable commit
			ops = ops[:64]
		}
		ctx := context.Background()
		src := open(t, "src.db")
		t0 := storetest.T0
		var serials []string
		n := 0
		// A serial's first byte is the fuzzer's, so that a renewal's serial
		// may sort before its predecessor's, as random serials do.
		serial := func(first byte) string {
			n++
			return fmt.Sprintf("%02x%030x", first, n)
		}
		pick := func(b byte) string { return serials[int(b)%len(serials)] }
		cert := func(first byte, cn string) *store.Cert {
			return storetest.NewCert(func(c *store.Cert) {
				c.Serial, c.CN, c.DNSNames = serial(first), cn, []string{cn}
				c.NotAfter = t0.Add(time.Duration(1+int(first)%48) * time.Hour)
			})
		}
		var tokens []string
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%8, ops[i+1]
			var err error
			switch op {
			case 0:
				c := cert(arg, fmt.Sprintf("h%d.covalent.example.net", arg%4))
				if err = src.InsertCert(ctx, c, &store.AuditEvent{At: t0, Actor: "admin:fuzz", Action: store.ActionIssue, Subject: c.Serial}); err == nil {
					serials = append(serials, c.Serial)
				}
			case 1:
				if len(serials) == 0 {
					continue
				}
				prev, err0 := src.GetCert(pick(arg))
				if err0 != nil {
					t.Fatal(err0)
				}
				c := cert(arg*31, prev.CN)
				c.PreviousSerial = prev.Serial
				if err = src.InsertRenewal(ctx, prev.Serial, c, nil); err == nil {
					serials = append(serials, c.Serial)
				}
			case 2:
				if len(serials) == 0 {
					continue
				}
				_, _, err = src.Revoke(ctx, pick(arg), store.Revocation{At: t0.Add(time.Duration(arg) * time.Second), Reason: int(arg) % 6, By: "admin:fuzz"}, nil)
			case 3:
				id := fmt.Sprintf("tok%d", arg%8)
				h := sha256.Sum256([]byte("secret-" + id))
				err = src.PutToken(ctx, &store.Token{ID: id, Hash: h[:], CN: "t.covalent.example.net", Profile: "covalent",
					CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), CreatedBy: "admin:fuzz"}, nil)
				if err == nil {
					tokens = append(tokens, id)
				}
			case 4:
				if len(tokens) == 0 {
					continue
				}
				id := tokens[int(arg)%len(tokens)]
				h := sha256.Sum256([]byte("secret-" + id))
				c := cert(arg, "t.covalent.example.net")
				c.TokenID = id
				if err = src.RedeemToken(ctx, id, h[:], t0, c, nil); err == nil {
					serials = append(serials, c.Serial)
				}
			case 5:
				err = src.AppendAudit(ctx, &store.AuditEvent{At: t0.Add(time.Duration(arg) * time.Millisecond), Actor: "admin:fuzz",
					Action: store.AuditActions[int(arg)%len(store.AuditActions)], Subject: fmt.Sprint(arg)})
			case 6:
				key := hex.EncodeToString([]byte{arg})
				err = src.PutSession(ctx, key, &store.Session{ID: key, CSRF: "c" + key, Actor: "admin", ExpiresAt: t0.Add(time.Hour)})
				if err == nil {
					err = src.PutMeta(ctx, "fuzz/"+key, map[string]int{"v": int(arg)})
				}
			case 7:
				_, err = src.NextCRLNumber(ctx)
			}
			// Refusals the contract allows (a used or expired token, an
			// existing serial) leave the store as it was; anything else is
			// a failure of the source, not of the copy.
			_ = err
		}

		dst := open(t, "dst.db")
		if interrupt > 0 {
			if err := src.Export(ctx, &failAfter{next: dst, n: int(interrupt) % 8}); err != nil && err != errInterrupted {
				t.Fatalf("interrupted copy: %v", err)
			}
		}
		if err := src.Export(ctx, dst); err != nil {
			t.Fatalf("copy: %v", err)
		}
		want, got := export(t, src), export(t, dst)
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("destination differs from the source:\nsource:      %+v\ndestination: %+v", want, got)
		}
		if err := dst.CheckIndexes(); err != nil {
			t.Fatalf("destination indexes: %v", err)
		}
		if err := src.Export(ctx, dst); err != nil {
			t.Fatalf("second copy: %v", err)
		}
		if again := export(t, dst); !reflect.DeepEqual(got, again) {
			t.Fatalf("a second copy changed the destination:\nbefore: %+v\nafter:  %+v", got, again)
		}
		now := t0.Add(time.Minute)
		revoked := func(db *store.DB) []string {
			cs, err := db.RevokedUnexpired(now)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range cs {
				out = append(out, c.Serial)
			}
			slices.Sort(out)
			return out
		}
		if a, b := revoked(src), revoked(dst); !slices.Equal(a, b) {
			t.Fatalf("revoked unexpired: source %v, destination %v", a, b)
		}
		if a, _ := src.CRLNumber(); true {
			if b, _ := dst.CRLNumber(); a != b {
				t.Fatalf("CRL number: source %d, destination %d", a, b)
			}
		}
		for i := range 4 {
			cn := fmt.Sprintf("h%d.covalent.example.net", i)
			a, _ := src.SerialsByCN(cn)
			b, _ := dst.SerialsByCN(cn)
			slices.Sort(a)
			slices.Sort(b)
			if !slices.Equal(a, b) {
				t.Fatalf("serials of %s: source %v, destination %v", cn, a, b)
			}
		}
		if len(serials) == 0 {
			return
		}
		target := pick(revokeAt)
		rev := store.Revocation{At: now, Reason: 1, By: "admin:fuzz"}
		ra, _, errA := src.Revoke(ctx, target, rev, nil)
		rb, _, errB := dst.Revoke(ctx, target, rev, nil)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("revoke %s: source %v, destination %v", target, errA, errB)
		}
		ser := func(cs []*store.Cert) []string {
			var out []string
			for _, c := range cs {
				out = append(out, c.Serial)
			}
			slices.Sort(out)
			return out
		}
		if a, b := ser(ra), ser(rb); !slices.Equal(a, b) {
			t.Fatalf("revoking %s revoked %v in the source, %v in the destination", target, a, b)
		}
		if a, b := revoked(src), revoked(dst); !slices.Equal(a, b) {
			t.Fatalf("after revoking %s: source %v, destination %v", target, a, b)
		}
	})
}
