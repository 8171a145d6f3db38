package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/pembundle"
	"github.com/lanyard/lanyard/internal/testpki"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// rootPair is a CA certificate and its key, for the roots tests.
type rootPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func testRoot(t *testing.T, cn string, now time.Time) rootPair {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return rootPair{cert: issueCA(t, cn, now, k, nil), key: k}
}

// issueCA issues a CA certificate for key named cn, under parent (nil:
// self-signed).
func issueCA(t *testing.T, cn string, now time.Time, key *ecdsa.PrivateKey, parent *rootPair) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + int64(len(cn))), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	return testpki.Issue(t, tmpl, issuer, &key.PublicKey, signer)
}

// TestRefreshRootsFile: the agent replaces DIR/ca.pem with a new root
// only when /roots.pem carries its cross-certificate from a stored root;
// an unsigned extra root or a bundle of strangers leaves ca.pem as it was.
func TestRefreshRootsFile(t *testing.T) {
	now := time.Now()
	old := testRoot(t, "lanyard root", now)
	next := testRoot(t, "lanyard root 2", now)
	stranger := testRoot(t, "lanyard root 2", now)
	cross := issueCA(t, "lanyard root 2", now, next.key, &old)
	enc := pembundle.Encode
	tests := []struct {
		name   string
		served []byte
		want   []byte
	}{
		{"cross-signed new root", enc(old.cert, next.cert, cross), enc(old.cert, next.cert)},
		{"unsigned extra root", enc(old.cert, stranger.cert), enc(old.cert)},
		{"strangers only", enc(stranger.cert), enc(old.cert)},
		{"garbage", []byte("not pem"), enc(old.cert)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/roots.pem" {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write(tt.served)
			}))
			defer srv.Close()
			cl, err := caclient.NewWithHTTP(srv.URL, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			stored := enc(old.cert)
			p := filepath.Join(dir, hostdir.RootsFile)
			if err := os.WriteFile(p, stored, 0o644); err != nil {
				t.Fatal(err)
			}
			got, _ := refreshRoots(t.Context(), dir, cl, stored, now)
			onDisk, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.want) || string(onDisk) != string(tt.want) {
				t.Fatalf("returned %d bytes, ca.pem %d bytes, want %d bytes", len(got), len(onDisk), len(tt.want))
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Fatalf("folder holds %d entries, want only %s", len(entries), hostdir.RootsFile)
			}
		})
	}
}

// TestUntrustedAfterFailedRootsFetchIsRetried: a renewed certificate that
// does not chain to the stored roots is final when /roots.pem was read
// (the CA vouched for no new root), but retryable when /roots.pem could not
// be fetched (a root rotation the host could not learn yet): before, a
// transient failure of that fetch ended the agent's retries for good.
func TestUntrustedAfterFailedRootsFetchIsRetried(t *testing.T) {
	now := time.Now()
	old := testRoot(t, "lanyard root", now)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for a moment", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cl, err := caclient.NewWithHTTP(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	stored := pembundle.Encode(old.cert)
	got, fetchErr := refreshRoots(t.Context(), t.TempDir(), cl, stored, now)
	if fetchErr == nil || string(got) != string(stored) {
		t.Fatalf("refreshRoots on a failing CA: fetchErr %v, roots changed %v", fetchErr, string(got) != string(stored))
	}
	if !errors.Is(fetchErr, caclient.ErrRootsUnavailable) {
		t.Fatalf("a 503 from /roots.pem: %v, want ErrRootsUnavailable", fetchErr)
	}
	unknownRoot := fmt.Errorf("renew DIR: version v1 stays current: %w (%w)", caclient.ErrUntrustedIssue, caclient.ErrUnknownRoot)
	wrongNames := fmt.Errorf("renew DIR: version v1 stays current: %w: CN", caclient.ErrUntrustedIssue)
	for _, tt := range []struct {
		name      string
		err       error
		fetchErr  error
		wantFinal bool
	}{
		{"unknown root, roots fetched", unknownRoot, nil, true},
		{"unknown root, roots answered 404", unknownRoot, errors.New("roots: /roots.pem answered 404 Not Found"), true},
		{"unknown root, roots fetch failed", unknownRoot, fetchErr, false},
		{"wrong names, roots fetch failed", wrongNames, fetchErr, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := retryableUntrusted(tt.err, tt.fetchErr)
			if IsFinal(err) != tt.wantFinal {
				t.Fatalf("IsFinal(%v) = %v, want %v", err, IsFinal(err), tt.wantFinal)
			}
		})
	}
}
