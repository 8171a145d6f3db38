package hostdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPrune: Keep versions are always kept, the current one and the one just
// replaced are never pruned, and a version goes only once it stopped being
// current at least MinAge ago.
func TestPrune(t *testing.T) {
	ca := newTestCA(t)
	mats := make([]Material, 12)
	for i := range mats {
		mats[i] = ca.issue(t, "ec")
	}
	type step struct {
		write   int           // versions to write at this step
		advance time.Duration // then move the clock
		want    []string      // versions present after the step
	}
	v := func(ns ...int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, fmt.Sprintf("%06d", n))
		}
		return out
	}
	tests := []struct {
		name  string
		keep  int
		steps []step
	}{
		{"quick writes prune nothing", 3, []step{
			{write: 8, want: v(1, 2, 3, 4, 5, 6, 7, 8)},
		}},
		{"after MinAge keep exactly Keep", 3, []step{
			{write: 8, advance: 11 * time.Minute, want: v(1, 2, 3, 4, 5, 6, 7, 8)},
			{write: 1, want: v(7, 8, 9)},
		}},
		{"only versions retired long enough go", 2, []step{
			{write: 4, advance: 11 * time.Minute},
			{write: 2, advance: time.Minute, want: v(4, 5, 6)},
			// 4 retired (when 5 became current) only 1 minute ago.
			{write: 1, want: v(4, 5, 6, 7)},
			{write: 0, advance: 10 * time.Minute},
			{write: 1, want: v(7, 8)},
		}},
		{"keep 1 still spares the one just replaced", 1, []step{
			{write: 3, want: v(1, 2, 3)},
			{write: 0, advance: time.Hour},
			{write: 1, want: v(3, 4)},
		}},
		{"default keep is 5", 0, []step{
			{write: 9, advance: time.Hour},
			{write: 1, want: v(6, 7, 8, 9, 10)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			d := openTemp(t)
			d.Keep = tc.keep
			d.Now = func() time.Time { return now }
			next := 0
			for i, s := range tc.steps {
				for range s.write {
					mustWrite(t, d, mats[next])
					next++
				}
				if s.want != nil {
					got, _ := d.Versions()
					if !slices.Equal(got, s.want) {
						t.Fatalf("step %d: versions = %v, want %v", i, got, s.want)
					}
					cur, _ := d.Current()
					if !slices.Contains(got, cur) {
						t.Fatalf("step %d: current %s was pruned", i, cur)
					}
				}
				now = now.Add(s.advance)
			}
			if _, err := d.LoadCurrent(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPruneWithoutWrite(t *testing.T) {
	ca := newTestCA(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	d := openTemp(t)
	d.Keep = 2
	d.Now = func() time.Time { return now }
	for range 4 {
		mustWrite(t, d, ca.issue(t, "ec"))
	}
	now = now.Add(time.Hour)
	must(t, d.Prune())
	if got, _ := d.Versions(); !slices.Equal(got, []string{"000003", "000004"}) {
		t.Errorf("versions = %v", got)
	}
}

// TestSupersededKeysRetired is issue 9 item 3 (host part): once a version
// has been superseded for MinAge, its private key is deleted (by Write,
// Prune or Open) while its certificates stay for history; the current
// version and the one just replaced keep theirs.
func TestSupersededKeysRetired(t *testing.T) {
	ca := newTestCA(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	d := openTemp(t)
	d.Now = func() time.Time { return now }
	withKey := func() []string {
		t.Helper()
		vs, err := d.Versions()
		must(t, err)
		var out []string
		for _, v := range vs {
			if _, err := os.Stat(filepath.Join(d.VersionPath(v), KeyFile)); err == nil {
				out = append(out, v)
			}
			if _, err := os.Stat(filepath.Join(d.VersionPath(v), CertFile)); err != nil {
				t.Errorf("version %s lost its certificate: %v", v, err)
			}
		}
		return out
	}
	mustWrite(t, d, ca.issue(t, "ec"))
	mustWrite(t, d, ca.issue(t, "ec"))
	if got := withKey(); !slices.Equal(got, []string{"000001", "000002"}) {
		t.Fatalf("right after the swap: keys in %v, want 000001 kept for MinAge", got)
	}
	now = now.Add(DefaultMinAge + time.Second)
	mustWrite(t, d, ca.issue(t, "ec"))
	if got := withKey(); !slices.Equal(got, []string{"000002", "000003"}) {
		t.Fatalf("after a later write: keys in %v, want 000002 (just replaced) and 000003", got)
	}
	if _, err := d.Load("000001"); !errors.Is(err, ErrKeyRetired) {
		t.Fatalf("Load of a retired version: %v, want ErrKeyRetired", err)
	}
	now = now.Add(DefaultMinAge + time.Second)
	must(t, d.Prune())
	if got := withKey(); !slices.Equal(got, []string{"000003"}) {
		t.Fatalf("after Prune: keys in %v, want only the current one", got)
	}
	if _, err := d.LoadCurrent(); err != nil {
		t.Fatal(err)
	}
	// Open retires too (a stopped agent, a cron `lanyard renew`): the
	// versions' clock is the real one here.
	d2 := openTemp(t)
	mustWrite(t, d2, ca.issue(t, "ec"))
	mustWrite(t, d2, ca.issue(t, "ec"))
	old := time.Now().Add(-2 * DefaultMinAge)
	must(t, os.Chtimes(d2.VersionPath("000002"), old, old))
	if _, err := Open(d2.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d2.VersionPath("000001"), KeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open left the superseded key: %v", err)
	}
}
