package clock

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// wallClockAllowed lists the server and host files that may read time.Now
// themselves, each for a reason in the package doc: measuring a duration,
// or a deadline on the kernel's clock.
var wallClockAllowed = map[string]string{
	"server/backup.go":        "network write deadline",
	"server/listener.go":      "network read deadline",
	"server/metrics.go":       "measures request duration",
	"revocation/crl.go":       "measures CRL build time for the log",
	"store/postgres/lease.go": "leader lease, measured on the monotonic clock",
	"store/postgres/batch.go": "resolve timeout, measured on the monotonic clock",
	"bench/report/main.go":    "benchmark timing",
	"bench/report/acme.go":    "benchmark timing",
	"internal/clock/clock.go": "the system clock",
}

// TestOneClock fails when production code reads the wall clock directly
// instead of through an injected Now or Clock (CONTRIBUTING.md, the clock).
func TestOneClock(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	direct := regexp.MustCompile(`\btime\.(Now|Since|Until)\b`)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if _, ok := wallClockAllowed[rel]; ok {
			if !direct.Match(data) {
				t.Errorf("%s is allowed to read the wall clock but does not: remove it from wallClockAllowed", rel)
			}
			return nil
		}
		for i, line := range strings.Split(string(data), "\n") {
			code, _, _ := strings.Cut(line, "//")
			if direct.MatchString(code) {
				t.Errorf("%s:%d reads the wall clock directly; take a Now func() time.Time (internal/clock): %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
