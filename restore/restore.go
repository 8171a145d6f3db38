// Package restore owns `lanyard restore`: putting a store backup back in
// place without undoing what happened after the backup was taken. A
// backup is older than the CRLs already published from the lost store, so
// restoring it as it is would silently un-revoke certificates and reuse
// CRL numbers (relying parties keep the highest number they saw and
// ignore a lower one, so the next CRLs would be ignored). Restore reads
// the last published CRLs (the replaced store's own, the trust anchor's,
// files), checks they are signed by this CA, and re-applies their
// revocations and numbers to the restored copy before it goes live; it
// also withdraws the backup's unused tokens (they may have been redeemed
// after the backup). Tokens minted after the backup are not in it and are
// refused as unknown.
package restore

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/atomicfile"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/store"
)

// Source is one published CRL and where it came from.
type Source struct {
	Name string
	// Data is the CRL, DER or PEM.
	Data []byte
}

// Options configures Restore.
type Options struct {
	// Backup is the backup file (never modified).
	Backup string
	// Store is the bbolt path the backup replaces; an existing file there
	// is kept as Store.before-restore-<time>.
	Store string
	// CRLs are the published CRLs to re-apply (at least one unless
	// AllowNoCRL).
	CRLs []Source
	// AllowNoCRL restores without any CRL (the operator knows nothing was
	// revoked since the backup); the result says so.
	AllowNoCRL bool
	// Issuers are the CA certificates a CRL may be signed by (the current
	// intermediate and any older ones still issuing CRLs).
	Issuers []*x509.Certificate
	// MaxValidity bounds the validity of a certificate the backup does not
	// know: it expired at the latest MaxValidity after its revocation.
	MaxValidity time.Duration
	DryRun      bool
	Now         time.Time
	Actor       string
}

// CRLInfo describes one CRL that was re-applied.
type CRLInfo struct {
	Source     string
	Number     int64
	ThisUpdate time.Time
	Entries    int
}

// Report is what Restore did (or, in a dry run, would do).
type Report struct {
	store.RestoreResult
	// BackupTakenAt is the newest audit event of the backup.
	BackupTakenAt time.Time
	CRLs          []CRLInfo
	// MovedAside is where the replaced store now is ("" if none).
	MovedAside string
	DryRun     bool
}

// ErrNoCRL means no published CRL was given and AllowNoCRL is not set.
var ErrNoCRL = errors.New("no published CRL to re-apply revocations from")

// Restore puts opts.Backup in place of opts.Store after re-applying the
// revocations and CRL numbers of opts.CRLs. Nothing is changed until the
// restored copy is complete, consistent and durable; then the old store
// is moved aside and the copy renamed into place.
func Restore(ctx context.Context, opts Options) (*Report, error) {
	if len(opts.CRLs) == 0 && !opts.AllowNoCRL {
		return nil, ErrNoCRL
	}
	if opts.MaxValidity <= 0 {
		return nil, errors.New("restore: no maximum certificate validity given")
	}
	if opts.Now.IsZero() {
		opts.Now = clock.System{}.Now()
	}
	rep := &Report{DryRun: opts.DryRun}
	req := store.RestoreRequest{WithdrawUnusedTokens: true}
	seen := map[string]bool{}
	for _, src := range opts.CRLs {
		crl, err := parseCRL(src)
		if err != nil {
			return nil, err
		}
		if err := checkIssuer(crl, opts.Issuers); err != nil {
			return nil, fmt.Errorf("restore: CRL %s: %w", src.Name, err)
		}
		n := crl.Number.Int64()
		rep.CRLs = append(rep.CRLs, CRLInfo{Source: src.Name, Number: n, ThisUpdate: crl.ThisUpdate, Entries: len(crl.RevokedCertificateEntries)})
		req.CRLNumberFloor = max(req.CRLNumberFloor, n)
		for _, e := range crl.RevokedCertificateEntries {
			serial := lanyardv1.FormatSerial(e.SerialNumber)
			if seen[serial] {
				continue
			}
			seen[serial] = true
			req.Revocations = append(req.Revocations, store.Reapplied{Serial: serial, At: e.RevocationTime, Reason: e.ReasonCode,
				NotAfter: e.RevocationTime.Add(opts.MaxValidity), Source: fmt.Sprintf("CRL #%d (%s)", n, src.Name)})
		}
	}

	// The store must be offline: open it (taking its lock) and close it.
	if _, err := os.Stat(opts.Store); err == nil {
		cur, err := store.Open(opts.Store, store.Options{NoBackup: true, Timeout: time.Second})
		if err != nil {
			return nil, fmt.Errorf("restore: the store %s is in use or damaged (stop lanyard serve first): %w", opts.Store, err)
		}
		cur.Close()
	}
	dir := filepath.Dir(opts.Store)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	pending, err := copyToPending(opts.Backup, opts.Store)
	if err != nil {
		return nil, err
	}
	defer pending.Discard()
	tmp := pending.Name()
	db, err := store.Open(tmp, store.Options{NoBackup: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("restore: the backup %s does not open as a store: %w", opts.Backup, err)
	}
	if rep.BackupTakenAt, err = db.LastActivity(); err != nil {
		db.Close()
		return nil, fmt.Errorf("restore: read the backup: %w", err)
	}
	req.Event = &store.AuditEvent{At: opts.Now, Actor: opts.Actor, Action: store.ActionRestore, Subject: filepath.Base(opts.Backup)}
	res, err := db.ReapplyRestore(ctx, req)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("restore: re-apply: %w", err)
	}
	rep.RestoreResult = *res
	if err := db.CheckIndexes(); err != nil {
		db.Close()
		return nil, fmt.Errorf("restore: the restored store: %w", err)
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if opts.DryRun {
		return rep, nil
	}
	if _, err := os.Stat(opts.Store); err == nil {
		rep.MovedAside = fmt.Sprintf("%s.before-restore-%s", opts.Store, opts.Now.UTC().Format("20060102T150405Z"))
		if err := os.Rename(opts.Store, rep.MovedAside); err != nil {
			return nil, fmt.Errorf("restore: move the old store aside: %w", err)
		}
	}
	if err := pending.Commit(); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	return rep, nil
}

func parseCRL(src Source) (*x509.RevocationList, error) {
	der := src.Data
	if blk, _ := pem.Decode(src.Data); blk != nil {
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("restore: %s: a PEM %q block, not an X509 CRL", src.Name, blk.Type)
		}
		der = blk.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("restore: %s is not a CRL: %w", src.Name, err)
	}
	if crl.Number == nil || !crl.Number.IsInt64() {
		return nil, fmt.Errorf("restore: CRL %s has no usable CRL number", src.Name)
	}
	return crl, nil
}

func checkIssuer(crl *x509.RevocationList, issuers []*x509.Certificate) error {
	for _, c := range issuers {
		if crl.CheckSignatureFrom(c) == nil {
			return nil
		}
	}
	return errors.New("not signed by this CA's intermediate")
}

// copyToPending copies the backup into a new 0600 file prepared beside
// dest (atomicfile.Prepare), fsynced by the Commit that puts it in place.
func copyToPending(backup, dest string) (*atomicfile.Pending, error) {
	in, err := os.Open(backup)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer in.Close()
	pending, err := atomicfile.Prepare(dest, 0o600)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	out, err := os.OpenFile(pending.Name(), os.O_WRONLY, 0)
	if err == nil {
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		pending.Discard()
		return nil, fmt.Errorf("restore: copy %s: %w", backup, err)
	}
	return pending, nil
}
