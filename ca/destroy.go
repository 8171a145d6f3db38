package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"go.step.sm/crypto/kms/apiv1"
)

// ErrNoRetiredKey is returned by DestroyRetiredKey when the retired
// intermediate has no key left (it was destroyed already) or there is no
// retired intermediate with that serial.
var ErrNoRetiredKey = errors.New("no retired intermediate key with that serial")

// DestroyOptions configure DestroyRetiredKey.
type DestroyOptions struct {
	// Dir is the CA folder.
	Dir string
	// Serial names the retired intermediate (lanyard's serial form, as
	// `lanyard ca status` prints it).
	Serial string
	// DryRun says what would be destroyed and changes nothing.
	DryRun bool
}

// DestroyResult says what DestroyRetiredKey did (or would do).
type DestroyResult struct {
	// Subject is the retired intermediate's common name.
	Subject string
	// Key is the key file removed, or the key URI of the object destroyed
	// in its KMS.
	Key string
	// InKMS is set when the key was an object in a KMS (a PKCS#11 token).
	InKMS bool
	// DryRun is set when nothing was changed.
	DryRun bool
}

// DestroyRetiredKey destroys the key of a retired intermediate: the key
// file RetiredDir/<serial>.key is overwritten with zeros, synced and
// removed; a key in a KMS (RetiredDir/<serial>.key.uri) is deleted from
// the token (PKCS#11) or its softkms file removed, then the URI file. The
// intermediate's certificate stays in RetiredDir (it is public, and
// `ca status` keeps listing it); from then on it signs no CRL.
//
// Whether a live certificate still needs the key's CRLs is the store's
// knowledge, not the CA folder's: the caller checks it first (the CLI
// refuses while `ca status` counts a live certificate under it). Run with
// lanyard serve stopped; a serve that loaded the key keeps it in memory
// until it stops. Overwriting a file does not reach copies a
// copy-on-write file system, an SSD's remapping or a backup kept: it is
// the removal that counts, and backups of the CA folder hold the key too.
func DestroyRetiredKey(opts DestroyOptions) (*DestroyResult, error) {
	serial := strings.ToLower(strings.TrimSpace(opts.Serial))
	if serial == "" || strings.ContainsAny(serial, `/\.`) {
		return nil, fmt.Errorf("ca: destroy retired key: %q is not a serial", opts.Serial)
	}
	base := filepath.Join(opts.Dir, RetiredDir, serial)
	certs, err := readCertFile(base + ".crt")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: destroy retired key %s: %w (lanyard ca status lists the retired intermediates)", serial, ErrNoRetiredKey)
	}
	if err != nil {
		return nil, err
	}
	if got := lanyardv1.FormatSerial(certs[0].SerialNumber); got != serial {
		return nil, fmt.Errorf("ca: destroy retired key: %s.crt holds serial %s", base, got)
	}
	res := &DestroyResult{Subject: certs[0].Subject.CommonName, DryRun: opts.DryRun}
	if raw, err := os.ReadFile(base + ".key.uri"); err == nil {
		res.Key, res.InKMS = strings.TrimSpace(string(raw)), true
		if opts.DryRun {
			return res, nil
		}
		if err := destroyKMSKey(opts.Dir, res.Key); err != nil {
			return nil, fmt.Errorf("ca: destroy retired key %s: %w", serial, err)
		}
		if err := os.Remove(base + ".key.uri"); err != nil {
			return nil, fmt.Errorf("ca: destroy retired key %s: the key is gone, its URI file stays: %w", serial, err)
		}
		return res, syncDir(filepath.Dir(base))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: destroy retired key %s: %w", serial, err)
	}
	res.Key = base + ".key"
	if _, err := os.Lstat(res.Key); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ca: destroy retired key %s: %w (it was destroyed already)", serial, ErrNoRetiredKey)
	} else if err != nil {
		return nil, fmt.Errorf("ca: destroy retired key %s: %w", serial, err)
	}
	if opts.DryRun {
		return res, nil
	}
	if err := shred(res.Key); err != nil {
		return nil, fmt.Errorf("ca: destroy retired key %s: %w", serial, err)
	}
	return res, syncDir(filepath.Dir(base))
}

// destroyKMSKey deletes the object keyURI names: from its PKCS#11 token,
// or the file of a softkms key. Other KMSs are the operator's to clean.
func destroyKMSKey(dir, keyURI string) error {
	t, err := kmsType(keyURI)
	if err != nil {
		return err
	}
	switch t {
	case apiv1.SoftKMS:
		path, err := softKMSPath(keyURI)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		return shred(path)
	case apiv1.PKCS11:
		km, _, err := openKMS(keyURI)
		if err != nil {
			return err
		}
		defer km.Close()
		d, ok := km.(interface{ DeleteKey(string) error })
		if !ok {
			return fmt.Errorf("the %s KMS cannot delete keys: delete %s with the token's tools", t, keyURI)
		}
		if err := d.DeleteKey(keyURI); err != nil {
			return fmt.Errorf("delete %s: %w", keyURI, err)
		}
		return nil
	default:
		return fmt.Errorf("lanyard cannot delete keys in a %s KMS: delete %s there", t, keyURI)
	}
}

// shred overwrites a regular file with zeros, syncs it and removes it.
func shred(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(make([]byte, fi.Size()))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("overwrite %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
