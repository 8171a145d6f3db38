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

// State is what a CA folder holds, certificates only (no key is read):
// what `lanyard ca status`, restore and the anchors sync need.
type State struct {
	// Roots are root.crt then roots.pem's extra roots.
	Roots []*x509.Certificate
	// Current is the issuing intermediate (intermediate.crt's first).
	Current *x509.Certificate
	// Retired are the intermediates of RetiredDir, oldest first.
	Retired []*x509.Certificate
}

// ReadState reads the certificates of the CA folder dir.
func ReadState(dir string) (*State, error) {
	p := PathsIn(dir)
	st := &State{}
	rootData, err := readFile(p.RootCert)
	if err != nil {
		return nil, err
	}
	if st.Roots, err = parseCertificates(p.RootCert, rootData); err != nil {
		return nil, err
	}
	if extra, err := os.ReadFile(p.Roots); err == nil {
		more, err := parseCertificates(p.Roots, extra)
		if err != nil {
			return nil, err
		}
		for _, c := range more {
			if !slices.ContainsFunc(st.Roots, c.Equal) {
				st.Roots = append(st.Roots, c)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: read %s: %w", p.Roots, err)
	}
	intData, err := readFile(p.IntermediateCert)
	if err != nil {
		return nil, err
	}
	chain, err := parseCertificates(p.IntermediateCert, intData)
	if err != nil {
		return nil, err
	}
	st.Current = chain[0]
	if st.Retired, err = readRetired(dir); err != nil {
		return nil, err
	}
	return st, nil
}

// readRetired reads RetiredDir/*.crt, oldest NotBefore first.
func readRetired(dir string) ([]*x509.Certificate, error) {
	entries, err := os.ReadDir(filepath.Join(dir, RetiredDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ca: read %s: %w", filepath.Join(dir, RetiredDir), err)
	}
	var out []*x509.Certificate
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".crt") {
			continue
		}
		path := filepath.Join(dir, RetiredDir, e.Name())
		data, err := readFile(path)
		if err != nil {
			return nil, err
		}
		certs, err := parseCertificates(path, data)
		if err != nil {
			return nil, err
		}
		out = append(out, certs[0])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NotBefore.Before(out[j].NotBefore) })
	return out, nil
}

// Issuers returns every intermediate that may sign certificates or CRLs
// still in use: the current one first, then the retired ones.
func (s *State) Issuers() []*x509.Certificate {
	return append([]*x509.Certificate{s.Current}, s.Retired...)
}
