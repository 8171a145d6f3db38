package replicas_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lanyard/lanyard/internal/pgtest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/store/postgres"
)

// get returns the status and body of path on c.
func get(t *testing.T, c *testca.CA, path string) (int, string) {
	t.Helper()
	resp, err := c.Anonymous.HTTP.Get(c.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample named name (with its labels, as
// exposed) in a /metrics page, or fails.
func metric(t *testing.T, page, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestHealthAndMetricsOnPostgres: /metrics says which replica leads, at
// which epoch, and what its connection pool does; /healthz answers 503
// while the database is down (crashed) and 200 again once it is back.
func TestHealthAndMetricsOnPostgres(t *testing.T) {
	a, b := twoReplicas(t)
	// One of the two leads: wait for the lease (bounded by its TTL).
	var leaders, epoch float64
	for start := time.Now(); ; {
		leaders, epoch = 0, 0
		for _, c := range []*testca.CA{a, b} {
			_, page := get(t, c, "/metrics")
			leaders += metric(t, page, "lanyard_leader")
			epoch += metric(t, page, "lanyard_leader_epoch")
		}
		if leaders == 1 || time.Since(start) > 3*postgres.DefaultLeaseTTL {
			break
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	if leaders != 1 || epoch < 1 {
		t.Fatalf("lanyard_leader sums to %v over the replicas (epoch %v), want 1", leaders, epoch)
	}
	for _, c := range []*testca.CA{a, b} {
		if code, body := get(t, c, "/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz with the database up: %d %s", code, body)
		}
		_, page := get(t, c, "/metrics")
		if total, limit := metric(t, page, `lanyard_store_pool_connections{state="total"}`), metric(t, page, "lanyard_store_pool_max_connections"); total < 1 || limit < total {
			t.Fatalf("pool: %v connections of at most %v", total, limit)
		}
		if metric(t, page, "lanyard_store_pool_acquires_total") < 1 {
			t.Fatal("the pool has handed out no connection")
		}
	}

	srv := pgtest.Shared(t)
	if err := srv.Crash(); err != nil {
		t.Fatal(err)
	}
	up := false
	resume := func() {
		if !up {
			up = true
			if err := srv.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(resume) // the package's other tests share the server
	for _, c := range []*testca.CA{a, b} {
		if code, body := get(t, c, "/healthz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/healthz with the database gone: %d %s, want 503", code, body)
		}
	}
	resume()
	for _, c := range []*testca.CA{a, b} {
		for start := time.Now(); ; {
			code, body := get(t, c, "/healthz")
			if code == http.StatusOK {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("/healthz 30s after the database came back: %d %s", code, body)
			}
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
}
