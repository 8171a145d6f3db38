package ca

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// RetiredDir is the folder of a CA folder that keeps the intermediates a
// rotation replaced: RetiredDir/<serial>.crt, and their keys as
// <serial>.key or <serial>.key.uri until they are destroyed. A retired
// intermediate still signs the CRL of the certificates it issued until the
// last of them has expired.
const RetiredDir = "retired"

// RetiredRootsDir is the folder of RetiredDir where `lanyard ca
// rotate-root --finish` moves what the old root needed: RetiredRootsDir/
// <old root serial>/ holds root.crt, cross.crt and the old root's
// intermediates with their keys (to be destroyed). Nothing in it is
// loaded to sign; its roots are only named so that the anchors sync
// removes them from the trust anchor.
const RetiredRootsDir = "roots"

// State is what a CA folder holds, certificates only (no key is read):
// what `lanyard ca status`, restore and the anchors sync need.
type State struct {
	// Roots are root.crt then roots.pem's extra roots.
	Roots []*x509.Certificate
	// Current is the issuing intermediate (intermediate.crt's first).
	Current *x509.Certificate
	// Retired are the intermediates of RetiredDir, oldest first.
	Retired []*x509.Certificate
	// Cross is, during a root rotation (`lanyard ca rotate-root`), the
	// cross-certificate of the new root (root.crt) issued by the old one
	// (roots.pem); nil otherwise.
	Cross *x509.Certificate
	// CrossIntermediate is, during a root rotation, the issuing
	// intermediate's cross-certificate issued by the old root: the
	// server's TLS chain carries it for hosts that trust only the old
	// root.
	CrossIntermediate *x509.Certificate
	// RetiredRoots are the old roots of finished root rotations
	// (RetiredDir/roots/<serial>/root.crt): no certificate chains to them
	// any more, and the anchors sync removes them from the trust anchor.
	RetiredRoots []*x509.Certificate
}

// ReadState reads the certificates of the CA folder dir.
// It first completes a change of the folder that a crash interrupted
// (see commitChanges).
func ReadState(dir string) (*State, error) {
	if _, err := replayJournal(dir); err != nil {
		return nil, err
	}
	p := PathsIn(dir)
	st := &State{}
	var err error
	if st.Roots, err = readRoots(p); err != nil {
		return nil, err
	}
	chain, err := readCertFile(p.IntermediateCert)
	if err != nil {
		return nil, err
	}
	st.Current = chain[0]
	if st.Retired, err = readRetired(dir); err != nil {
		return nil, err
	}
	cross, err := readCross(dir)
	if err != nil {
		return nil, err
	}
	if err := checkCross(cross, st.Roots, st.Current); err != nil {
		return nil, err
	}
	if len(cross) > 0 {
		st.Cross = cross[0]
	}
	if len(cross) > 1 {
		st.CrossIntermediate = cross[1]
	}
	if st.RetiredRoots, err = readRetiredRoots(dir); err != nil {
		return nil, err
	}
	return st, nil
}

// OldRoot is, during a root rotation, the root being replaced: the one
// that issued Cross. It is nil when no rotation is in progress.
func (s *State) OldRoot() *x509.Certificate {
	if s.Cross == nil {
		return nil
	}
	for _, r := range s.Roots {
		if s.Cross.CheckSignatureFrom(r) == nil && !r.Equal(s.Roots[0]) {
			return r
		}
	}
	return nil
}

// UnderOldRoot are, during a root rotation, the retired intermediates the
// old root issued: the certificates they issued chain to the old root.
func (s *State) UnderOldRoot() []*x509.Certificate {
	old := s.OldRoot()
	if old == nil {
		return nil
	}
	var out []*x509.Certificate
	for _, c := range s.Retired {
		if c.CheckSignatureFrom(old) == nil {
			out = append(out, c)
		}
	}
	return out
}

// readCross reads the certificates of CrossCertFile, if there is one.
func readCross(dir string) ([]*x509.Certificate, error) {
	path := filepath.Join(dir, CrossCertFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ca: read %s: %w", path, err)
	}
	return parseCertificates(path, data)
}

// readRetiredRoots reads RetiredDir/roots/*/root.crt, oldest NotBefore
// first.
func readRetiredRoots(dir string) ([]*x509.Certificate, error) {
	base := filepath.Join(dir, RetiredDir, RetiredRootsDir)
	return readCertDir(base, func(e fs.DirEntry) string {
		if !e.IsDir() {
			return ""
		}
		return filepath.Join(base, e.Name(), RootCertFile)
	})
}

// readRetired reads RetiredDir/*.crt, oldest NotBefore first.
func readRetired(dir string) ([]*x509.Certificate, error) {
	base := filepath.Join(dir, RetiredDir)
	return readCertDir(base, func(e fs.DirEntry) string {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".crt") {
			return ""
		}
		return filepath.Join(base, e.Name())
	})
}

// readCertDir reads the first certificate of the file that path names
// for each entry of base ("": none), oldest NotBefore first; a missing
// base holds none.
func readCertDir(base string, path func(fs.DirEntry) string) ([]*x509.Certificate, error) {
	entries, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ca: read %s: %w", base, err)
	}
	var out []*x509.Certificate
	for _, e := range entries {
		p := path(e)
		if p == "" {
			continue
		}
		certs, err := readCertFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, certs[0])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NotBefore.Before(out[j].NotBefore) })
	return out, nil
}

// readCertFile reads the certificates of the PEM file path.
func readCertFile(path string) ([]*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseCertificates(path, data)
}

// readRoots reads the roots a CA folder trusts: those of RootCertFile,
// then those of the roots bundle (p.Roots, if there is one) not already
// in it.
func readRoots(p *Paths) ([]*x509.Certificate, error) {
	roots, err := readCertFile(p.RootCert)
	if err != nil {
		return nil, err
	}
	extraData, err := os.ReadFile(p.Roots)
	if errors.Is(err, fs.ErrNotExist) {
		return roots, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ca: read %s: %w", p.Roots, err)
	}
	extra, err := parseCertificates(p.Roots, extraData)
	if err != nil {
		return nil, err
	}
	for _, c := range extra {
		if !slices.ContainsFunc(roots, c.Equal) {
			roots = append(roots, c)
		}
	}
	return roots, nil
}

// Issuers returns every intermediate that may sign certificates or CRLs
// still in use: the current one first, then the retired ones.
func (s *State) Issuers() []*x509.Certificate {
	return append([]*x509.Certificate{s.Current}, s.Retired...)
}
