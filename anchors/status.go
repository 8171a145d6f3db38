package anchors

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lanyard/lanyard/store"
)

// StatusKey is the store meta key the default target's Status is
// persisted under (StatusKeyFor names the others').
const StatusKey = "anchors.status"

// StatusKeyFor is the meta key of target's Status ("" the default).
func StatusKeyFor(target string) string {
	if target == "" {
		return StatusKey
	}
	return StatusKey + "." + target
}

// ErrNoStatus: no sync has been recorded in the store yet. It wraps
// store.ErrNotFound.
var ErrNoStatus = fmt.Errorf("no trust-anchor sync recorded yet: %w", store.ErrNotFound)

// CertInfo identifies one certificate in a report.
type CertInfo struct {
	// Subject is the certificate's subject DN.
	Subject string `json:"subject"`
	// SHA256 is the hex SHA-256 of the DER certificate.
	SHA256 string `json:"sha256"`
	// NotAfter is the end of its validity.
	NotAfter time.Time `json:"not_after"`
}

func certInfo(c *x509.Certificate) CertInfo {
	sum := sha256.Sum256(c.Raw)
	return CertInfo{Subject: c.Subject.String(), SHA256: hex.EncodeToString(sum[:]), NotAfter: c.NotAfter.UTC()}
}

// String is the certificate in one line: subject, short fingerprint, expiry.
func (c CertInfo) String() string {
	return fmt.Sprintf("%s (sha256 %s…, expires %s)", c.Subject, c.SHA256[:16], c.NotAfter.Format(time.DateOnly))
}

// Status is what the Syncer last did and saw. Every change is persisted
// in the store (StatusKeyFor), the one source the admin page and
// `lanyard anchors status` read, through admin.Service.AnchorStatus (the
// GetAnchorStatus admin RPC).
type Status struct {
	// TrustAnchorARN and ProfileARN are the anchor and profile synced.
	TrustAnchorARN string `json:"trust_anchor_arn,omitempty"`
	ProfileARN     string `json:"profile_arn,omitempty"`
	// RoleARN is the role of the profile (as configured).
	RoleARN string `json:"role_arn,omitempty"`
	// Created is set when lanyard created the anchor (and so may create
	// it again if it disappears).
	Created bool `json:"created,omitempty"`

	// LastSync is when the last Sync finished (dry runs excluded).
	LastSync time.Time `json:"last_sync,omitzero"`
	// LastResult is "in sync", "updated", "created" or "error".
	LastResult string `json:"last_result,omitempty"`
	// LastError is the last Sync's error ("" when it succeeded).
	LastError string `json:"last_error,omitempty"`
	// Drift describes the difference the last Sync found ("" if none).
	Drift string `json:"drift,omitempty"`
	// Bundle is the anchor's bundle after the last Sync.
	Bundle []CertInfo `json:"bundle,omitempty"`
	// Foreign lists certificates in the anchor that are not the CA's.
	Foreign []CertInfo `json:"foreign,omitempty"`
	// KillSwitch is set while `lanyard anchors disable` holds the anchor
	// and profile disabled (its time and reason).
	KillSwitch string `json:"kill_switch,omitempty"`
	// Changes are the settings the last Sync repaired.
	Changes []Change `json:"changes,omitempty"`
	// Subjects is the last subjects report (nil: none made).
	Subjects *SubjectsSummary `json:"subjects,omitempty"`

	// CRLArn is the CRL lanyard imported into the anchor.
	CRLArn string `json:"crl_arn,omitempty"`
	// CRLNumber is the number of the CRL AWS holds (0: none known).
	CRLNumber int64 `json:"crl_number,omitempty"`
	// CRLEntries is how many certificates that CRL lists.
	CRLEntries int `json:"crl_entries,omitempty"`
	// CRLNextUpdate is that CRL's nextUpdate.
	CRLNextUpdate time.Time `json:"crl_next_update,omitzero"`
	// CRLPushedAt is when the last CRL reached AWS.
	CRLPushedAt time.Time `json:"crl_pushed_at,omitzero"`
	// CRLError is why the last CRL push failed ("" after a success).
	CRLError string `json:"crl_error,omitempty"`
	// CRLErrorNumber is the number of the CRL that failed.
	CRLErrorNumber int64 `json:"crl_error_number,omitempty"`
	// CRLErrorAt is when it failed.
	CRLErrorAt time.Time `json:"crl_error_at,omitzero"`
}

// StatusReader is the part of the store LoadStatusFor reads
// (store.Meta's GetMeta).
type StatusReader interface {
	GetMeta(key string, v any) error
}

// LoadStatus reads the persisted Status; ErrNoStatus if there is none.
func LoadStatus(db StatusReader) (*Status, error) {
	return LoadStatusFor(db, "")
}

// LoadStatusFor reads the persisted Status of target.
func LoadStatusFor(db StatusReader, target string) (*Status, error) {
	var st Status
	if err := db.GetMeta(StatusKeyFor(target), &st); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNoStatus
		}
		return nil, fmt.Errorf("anchors: read status: %w", err)
	}
	return &st, nil
}

// Status returns a copy of the current status.
func (s *Syncer) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Bundle = append([]CertInfo(nil), st.Bundle...)
	st.Foreign = append([]CertInfo(nil), st.Foreign...)
	st.Changes = append([]Change(nil), st.Changes...)
	return st
}

// persistedStatus is Status once the status write in flight, if any, is
// in the store (update changes the status in memory first).
func (s *Syncer) persistedStatus() Status {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	return s.Status()
}

// update changes the status under the lock and persists it.
// Writes are serialised so the store never ends up with an older snapshot.
func (s *Syncer) update(ctx context.Context, fn func(*Status)) {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.Lock()
	fn(&s.status)
	st, unread := s.status, s.unread
	s.mu.Unlock()
	if s.db == nil || unread {
		return
	}
	// Persist even when ctx is being cancelled: the status of what
	// happened must not be lost to a shutdown.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.db.PutMeta(pctx, StatusKeyFor(s.cfg.Target), st); err != nil {
		s.log.Warn("anchors: could not persist status", "err", err)
	}
}
