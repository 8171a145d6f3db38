package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// runLanyard runs the lanyard command line in-process.
func runLanyard(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runLanyardStdin(t, "", args...)
}

// runLanyardStdin runs the lanyard command line in-process with stdin.
func runLanyardStdin(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// attackerRoot is a CA of the machine in the middle: a self-signed root and
// a server certificate for 127.0.0.1 under it.
type attackerRoot struct {
	root    *x509.Certificate
	rootPEM []byte
	server  tls.Certificate
}

func newAttackerRoot(t *testing.T) *attackerRoot {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lanyard root"}, // the real root's look-alike
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return &attackerRoot{
		root: root, rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		server: tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: crypto.Signer(leafKey)},
	}
}

// mitm sits between a host and the CA on a loopback port. Connections
// whose number (from 0) passthrough selects are piped to the CA untouched;
// the others it terminates with the attacker's certificate: it answers
// /roots.pem with rootsPEM and forwards every other request to the CA,
// counting it (a forwarded enroll is a stolen token).
type mitm struct {
	ln          net.Listener
	conns       atomic.Int32
	intercepted atomic.Int32
}

func startMITM(t *testing.T, caURL string, att *attackerRoot, rootsPEM []byte, passthrough func(n int) bool) *mitm {
	t.Helper()
	up, err := url.Parse(caURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mitm{ln: ln}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the attacker does not care
	terminated := &chanListener{addr: ln.Addr(), ch: make(chan net.Conn)}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{att.server}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/roots.pem" {
				_, _ = w.Write(rootsPEM)
				return
			}
			m.intercepted.Add(1)
			rp.ServeHTTP(w, r)
		})}
	go func() { _ = srv.ServeTLS(terminated, "", "") }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				terminated.Close()
				return
			}
			if n := int(m.conns.Add(1) - 1); passthrough(n) {
				go pipe(c, up.Host)
			} else {
				terminated.ch <- c
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); srv.Close() })
	return m
}

func (m *mitm) URL() string { return "https://" + m.ln.Addr().String() }

func pipe(c net.Conn, addr string) {
	defer c.Close()
	u, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer u.Close()
	servetest.Splice(c, u)
}

// chanListener hands connections accepted elsewhere to an http.Server.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
}

func (l *chanListener) init() {
	l.mu.Lock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	l.mu.Unlock()
}

func (l *chanListener) Accept() (net.Conn, error) {
	l.init()
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.init()
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// storedRoots returns the certificates of DIR/ca.pem.
func storedRoots(t *testing.T, dir string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, hostdir.RootsFile))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := caclient.ParseCertificates(b)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestEnrollFingerprintPinsOneRoot is issue 9 item 1: with --fingerprint,
// a /roots.pem (or --roots file) that adds a second root beside the pinned
// one must not make the host trust that root, for the enrollment itself or
// in DIR/ca.pem.
func TestEnrollFingerprintPinsOneRoot(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	fp := ca.Authority.Fingerprint()
	att := newAttackerRoot(t)
	bundle := append(ca.Authority.RootsPEM(), att.rootPEM...)
	cn := "pin.covalent.example.net"

	t.Run("MITM intercepts after the verified check: token never sent", func(t *testing.T) {
		// Connection 0 fetches /roots.pem (unverified), connection 1 is the
		// verified check, which the attacker lets through to the real CA;
		// every later connection is the attacker's.
		m := startMITM(t, ca.URL, att, bundle, func(n int) bool { return n == 1 })
		out := filepath.Join(t.TempDir(), "host")
		_, _, err := runLanyard(t, "enroll", "--ca", m.URL(), "--fingerprint", fp, "--token", ca.Token(t, cn), "--out", out)
		if err == nil {
			t.Fatal("enroll through the MITM succeeded")
		}
		if n := m.intercepted.Load(); n != 0 {
			t.Fatalf("the MITM terminated %d requests besides /roots.pem (the token was sent to it)", n)
		}
		if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
			t.Fatalf("host folder written after a failed enroll: %v", serr)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("extra root in /roots.pem: only the pinned root is stored", func(t *testing.T) {
		m := startMITM(t, ca.URL, att, bundle, func(n int) bool { return n > 0 })
		out := filepath.Join(t.TempDir(), "host")
		if _, _, err := runLanyard(t, "enroll", "--ca", m.URL(), "--fingerprint", fp, "--token", ca.Token(t, cn), "--out", out); err != nil {
			t.Fatal(err)
		}
		if roots := storedRoots(t, out); len(roots) != 1 || caclient.Fingerprint(roots[0]) != fp {
			t.Fatalf("ca.pem holds %d roots, want only the pinned one", len(roots))
		}
	})

	t.Run("--roots file with an extra root and --fingerprint: only the pinned root is stored", func(t *testing.T) {
		rootsFile := filepath.Join(t.TempDir(), "roots.pem")
		if err := os.WriteFile(rootsFile, bundle, 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "host")
		if _, _, err := runLanyard(t, "enroll", "--ca", ca.URL, "--roots", rootsFile, "--fingerprint", fp, "--token", ca.Token(t, cn), "--out", out); err != nil {
			t.Fatal(err)
		}
		if roots := storedRoots(t, out); len(roots) != 1 || caclient.Fingerprint(roots[0]) != fp {
			t.Fatalf("ca.pem holds %d roots, want only the pinned one", len(roots))
		}
	})
}

// TestEnrollRefusesUntrustedAnswer: a CA front holding a TLS certificate
// under the pinned root (a leaked server key, or a buggy CA) answers with
// a leaf the host did not ask for; enroll must refuse it and write nothing.
func TestEnrollRefusesUntrustedAnswer(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	other := testca.Start(t, testca.Options{})
	rootsFile := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(rootsFile, ca.Authority.RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cn := "front.covalent.example.net"
	tests := []struct {
		name    string
		issue   testca.Issue
		args    []string
		wantErr error
	}{
		{"leaf under another root", func(csr *x509.CertificateRequest) (string, string) {
			return other.SignAs(t, csr.PublicKey, cn)
		}, []string{"--cn", cn}, caclient.ErrUntrustedIssue},
		{"leaf under another root, no --cn", func(csr *x509.CertificateRequest) (string, string) {
			return other.SignAs(t, csr.PublicKey, cn)
		}, nil, caclient.ErrUntrustedIssue},
		{"other CN", func(csr *x509.CertificateRequest) (string, string) {
			return ca.SignAs(t, csr.PublicKey, "admin.covalent.example.net")
		}, []string{"--cn", cn}, caclient.ErrUntrustedIssue},
		{"a SAN not asked for", func(csr *x509.CertificateRequest) (string, string) {
			return ca.SignAs(t, csr.PublicKey, cn, cn, "db.covalent.example.net")
		}, []string{"--cn", cn, "--dns-name", cn}, caclient.ErrUntrustedIssue},
		{"what was asked: written", func(csr *x509.CertificateRequest) (string, string) {
			return ca.SignAs(t, csr.PublicKey, csr.Subject.CommonName, csr.DNSNames...)
		}, []string{"--cn", cn, "--dns-name", cn}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			front := ca.Impostor(t, tt.issue)
			out := filepath.Join(t.TempDir(), "host")
			args := append([]string{"enroll", "--ca", front, "--roots", rootsFile, "--token", "unused", "--out", out}, tt.args...)
			_, _, err := runLanyard(t, args...)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("host folder written for a refused answer: %v", serr)
			}
		})
	}
}

// TestEnrollTokenSources is issue 9 item 10: the token comes from a file or
// stdin; --token SECRET still works but warns that argv is visible.
func TestEnrollTokenSources(t *testing.T) {
	ca := testca.Start(t, testca.Options{})
	fp := ca.Authority.Fingerprint()
	const warning = "warning: --token puts the secret in this command line"
	tests := []struct {
		name     string
		args     func(token string) ([]string, string) // flags, stdin
		wantWarn bool
		wantErr  string
	}{
		{"--token-file", func(token string) ([]string, string) {
			f := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--token-file", f}, ""
		}, false, ""},
		{"--token - reads stdin", func(token string) ([]string, string) {
			return []string{"--token", "-"}, token + "\n"
		}, false, ""},
		{"--token SECRET warns", func(token string) ([]string, string) {
			return []string{"--token", token}, ""
		}, true, ""},
		{"--token - with empty stdin", func(string) ([]string, string) {
			return []string{"--token", "-"}, ""
		}, false, "are required"},
		{"both", func(token string) ([]string, string) {
			return []string{"--token", token, "--token-file", "x"}, ""
		}, false, "not both"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cn := fmt.Sprintf("tok%d.covalent.example.net", i)
			flags, stdin := tt.args(ca.Token(t, cn))
			out := filepath.Join(t.TempDir(), "host")
			args := append([]string{"enroll", "--ca", ca.URL, "--fingerprint", fp, "--cn", cn, "--out", out}, flags...)
			_, stderr, err := runLanyardStdin(t, stdin, args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(stderr, warning); got != tt.wantWarn {
				t.Fatalf("warning on stderr: %v, want %v (stderr %q)", got, tt.wantWarn, stderr)
			}
			if _, err := os.Stat(filepath.Join(out, "cert.pem")); err != nil {
				t.Fatal(err)
			}
		})
	}
}
