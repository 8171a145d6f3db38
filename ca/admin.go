package ca

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lanyard/lanyard/internal/atomicfile"
)

// nextSuffix names the staged files of an admin credential replacement.
const nextSuffix = ".next"

// ReplaceAdminCredential replaces the admin credential files of p
// (admin.crt 0644, admin.key 0600) with certPEM and keyPEM so that a crash
// at any point leaves a usable pair: both are first staged durably as
// admin.crt.next and admin.key.next, then renamed over the old ones, key
// first. LoadAdminCredential finishes a replacement a crash interrupted.
func ReplaceAdminCredential(p *Paths, certPEM, keyPEM []byte) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("ca: replace admin credential: the certificate and key do not match: %w", err)
	}
	for _, f := range []struct {
		path string
		data []byte
		perm fs.FileMode
	}{{p.AdminKey + nextSuffix, keyPEM, 0o600}, {p.AdminCert + nextSuffix, certPEM, 0o644}} {
		if err := writeReplace(f.path, f.data, f.perm); err != nil {
			return err
		}
	}
	return finishAdminReplace(p)
}

// finishAdminReplace renames the staged pair into place, key first, and
// makes the names durable.
func finishAdminReplace(p *Paths) error {
	for _, path := range []string{p.AdminKey, p.AdminCert} {
		if err := os.Rename(path+nextSuffix, path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ca: replace admin credential: %w", err)
		}
	}
	return syncDir(filepath.Dir(p.AdminCert))
}

// LoadAdminCredential loads the admin credential of p as a TLS client
// certificate. When a ReplaceAdminCredential was interrupted, the staged
// pair (the one the CA issued last, the old one being revoked by then) is
// finished into place first.
func LoadAdminCredential(p *Paths) (tls.Certificate, error) {
	stagedCert := p.AdminCert + nextSuffix
	if _, err := os.Stat(stagedCert); err == nil {
		// Crashed before the renames (both staged) or between them (key
		// already in place): finish when the staged certificate pairs.
		for _, key := range []string{p.AdminKey + nextSuffix, p.AdminKey} {
			if _, err := tls.LoadX509KeyPair(stagedCert, key); err == nil {
				if err := finishAdminReplace(p); err != nil {
					return tls.Certificate{}, err
				}
				break
			}
		}
	}
	cert, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("admin credential (%s, %s): %w", p.AdminCert, p.AdminKey, err)
	}
	return cert, nil
}

// writeReplace writes data to path (mode perm) atomically
// (atomicfile.Write): readers see the old or the new content.
func writeReplace(path string, data []byte, perm fs.FileMode) error {
	if err := atomicfile.Write(path, data, perm); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}
