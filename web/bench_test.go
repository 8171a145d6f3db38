package web

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store"
)

// benchStore is the large store the search benchmark fills once per
// process (only when the benchmark runs) and TestMain removes.
var benchStore struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore.dir != "" {
		os.RemoveAll(benchStore.dir)
	}
	os.Exit(code)
}

// benchRecords is the store size: 1,000,000 unless LANYARD_BENCH_RECORDS says otherwise.
func benchRecords() int {
	if n, err := strconv.Atoi(os.Getenv("LANYARD_BENCH_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// fillStore inserts n certificate records with CNs host0000000… in an order
// unrelated to their (time-ordered) serials, each with a DER-sized blob,
// through many concurrent writers so the store's group commit batches them.
func fillStore(db store.Store, n int, now time.Time) error {
	const writers = 1024
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	der := make([]byte, 480) // about the size of a P-256 client certificate
	_, _ = rand.Read(der)
	base := uint64(now.UnixNano())
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sb [16]byte
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				binary.BigEndian.PutUint64(sb[:8], base+uint64(i))
				_, _ = rand.Read(sb[8:])
				cnIdx := (int64(i) * 7919) % int64(n) // a permutation of 0..n-1 (n is not a multiple of 7919)
				c := &store.Cert{Serial: hex.EncodeToString(sb[:]), CN: fmt.Sprintf("host%07d.covalent.example.net", cnIdx),
					DNSNames: []string{fmt.Sprintf("host%07d.covalent.example.net", cnIdx)}, Profile: "covalent", KeyType: "P-256",
					NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Duration(i%(14*24)) * time.Hour), IssuedAt: now, DER: der,
					TokenID: "0123456789abcdef"}
				if err := db.InsertCert(context.Background(), c, nil); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// BenchmarkSearchFirstPage1M times the first page of a CN-prefix search
// through the web handler (session check, store query, rendering) with
// 1,000,000 certificate records in the store. Target: ≤ 50 ms.
func BenchmarkSearchFirstPage1M(b *testing.B) {
	n := benchRecords()
	benchStore.once.Do(func() {
		benchStore.dir, benchStore.err = os.MkdirTemp("", "lanyard-web-bench-")
		if benchStore.err != nil {
			return
		}
		c := testca.Start(b, testca.Options{Dir: benchStore.dir})
		start := time.Now()
		benchStore.err = fillStore(c.Store, n, time.Now())
		size, _ := c.Store.Stats()
		b.Logf("filled %d records in %s (store %d MiB)", n, time.Since(start).Round(time.Second), size>>20)
		c.Stop()
	})
	if benchStore.err != nil {
		b.Fatal(benchStore.err)
	}
	c := testca.Start(b, testca.Options{Dir: benchStore.dir})
	h, err := New(Config{Store: c.Store, Issuance: c.Issuance, Revocation: c.Revocation, CAURL: c.URL, Fingerprint: c.Authority.Fingerprint()})
	if err != nil {
		b.Fatal(err)
	}
	e := &env{ca: c, h: h}
	if err := SetPassword(context.Background(), c.Store, testPassword); err != nil {
		b.Fatal(err)
	}
	cookie, _ := e.login(b)
	// A prefix in the middle of the index: 100 matches, first page 50.
	target := fmt.Sprintf("/admin/certs?cn=host%05d", n/200)
	req := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "https://lanyard.test"+target, nil)
		r.AddCookie(&http.Cookie{Name: SessionCookie, Value: cookie})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := req(); w.Code != http.StatusOK || strings.Count(w.Body.String(), `class="cn"`) != pageSize || !strings.Contains(w.Body.String(), `rel="next"`) {
		b.Fatalf("search page: %d, %d rows", w.Code, strings.Count(w.Body.String(), `class="cn"`))
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		req()
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/page")
}
