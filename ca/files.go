package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lanyard/lanyard/internal/atomicfile"
)

// File names inside a CA folder.
const (
	RootCertFile           = "root.crt"
	RootKeyFile            = "root.key"
	RootsFile              = "roots.pem"
	IntermediateCertFile   = "intermediate.crt"
	IntermediateKeyFile    = "intermediate.key"
	IntermediateKeyURIFile = "intermediate.key.uri"
	AdminCertFile          = "admin.crt"
	AdminKeyFile           = "admin.key"
	// CrossCertFile is, during a root rotation, the new root's
	// cross-certificate issued by the old root: served in /roots.pem and
	// in the server's TLS chain, so hosts that trust only the old root
	// learn the new one through it (caclient's pinning rule).
	CrossCertFile = "cross.crt"
)

// Paths lists the files of a CA folder.
type Paths struct {
	// Dir is the CA folder.
	Dir string
	// RootCert is the root certificate (PEM).
	RootCert string
	// RootKey is the root private key; empty after Import (no root key).
	RootKey string
	// Roots is the optional bundle of extra trusted roots (rotation).
	Roots string
	// IntermediateCert is the issuing intermediate certificate (PEM).
	IntermediateCert string
	// IntermediateKey is the intermediate private key file (PEM). For a
	// KMS-backed CA whose KMS keeps the key itself it is empty.
	IntermediateKey string
	// IntermediateKeyURI is the file holding the KMS URI of the intermediate
	// key; empty when the key is a plain PEM file.
	IntermediateKeyURI string
	// AdminCert is the admin mTLS client certificate (PEM).
	AdminCert string
	// AdminKey is the admin client private key (unencrypted PKCS#8 PEM).
	AdminKey string
}

// PathsIn returns the default file paths of a CA folder dir (the root key
// inside dir, no KMS URI file).
func PathsIn(dir string) *Paths {
	return &Paths{
		Dir:              dir,
		RootCert:         filepath.Join(dir, RootCertFile),
		RootKey:          filepath.Join(dir, RootKeyFile),
		Roots:            filepath.Join(dir, RootsFile),
		IntermediateCert: filepath.Join(dir, IntermediateCertFile),
		IntermediateKey:  filepath.Join(dir, IntermediateKeyFile),
		AdminCert:        filepath.Join(dir, AdminCertFile),
		AdminKey:         filepath.Join(dir, AdminKeyFile),
	}
}

// fileWriter writes new files atomically and, when asked, removes again
// everything it wrote, so a failed Init or Import leaves nothing behind.
type fileWriter struct {
	written []string
	dirs    map[string]bool
}

// create writes data to path with mode perm: a temporary file in the same
// folder is written and fsynced, then hard-linked to path, which fails with
// ErrExists if path already exists (an existing file is never replaced).
func (w *fileWriter) create(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := atomicfile.Create(path, data, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s exists", ErrExists, path)
		}
		return fmt.Errorf("ca: %w", err)
	}
	w.written = append(w.written, path)
	if w.dirs == nil {
		w.dirs = map[string]bool{}
	}
	w.dirs[dir] = true
	return nil
}

// sync fsyncs every folder a file was written to, making the new names
// durable.
func (w *fileWriter) sync() error {
	for dir := range w.dirs {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// rollback removes every file written so far.
func (w *fileWriter) rollback() {
	for i := len(w.written) - 1; i >= 0; i-- {
		_ = os.Remove(w.written[i])
	}
	w.written = nil
}

// syncDir fsyncs a folder (atomicfile.SyncDir).
func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// refuseExisting returns ErrExists naming the first of paths that exists.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if p == "" {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s exists", ErrExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ca: check %s: %w", p, err)
		}
	}
	return nil
}

// readFile reads a CA file, naming it in the error.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("ca: read %s: %w", path, err)
	}
	return b, nil
}
