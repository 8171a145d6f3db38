package store

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"time"
)

// Status values of a certificate record, as the API and the web page show them.
const (
	StatusValid   = "valid"
	StatusExpired = "expired"
	StatusRevoked = "revoked"
)

// Cert is the store's record of one issued certificate. It is written
// before the certificate leaves the server.
type Cert struct {
	Serial    string    `json:"serial"` // 32 lower-case hex digits
	CN        string    `json:"cn"`
	DNSNames  []string  `json:"dns,omitempty"`
	Profile   string    `json:"profile"`
	KeyType   string    `json:"key_type"`
	NotBefore time.Time `json:"nbf"`
	NotAfter  time.Time `json:"naf"`
	IssuedAt  time.Time `json:"iat"`
	DER       []byte    `json:"der"`
	// TokenID is the enrollment token that asked for it (empty for renewals).
	TokenID string `json:"token,omitempty"`
	// PreviousSerial is the certificate this one renews; NextSerial the
	// newest certificate that renewed this one.
	PreviousSerial string `json:"prev,omitempty"`
	NextSerial     string `json:"next,omitempty"`
	// RenewedAt is when the first renewal of this certificate was
	// recorded (the IssuedAt of its first successor; zero: never renewed).
	// Renewal refuses a certificate renewed longer ago than a short grace.
	RenewedAt  time.Time   `json:"renewed,omitzero"`
	Revocation *Revocation `json:"rev,omitempty"`
}

// Status returns valid, expired or revoked at now.
func (c *Cert) Status(now time.Time) string {
	switch {
	case c.Revocation != nil:
		return StatusRevoked
	case !now.Before(c.NotAfter):
		return StatusExpired
	default:
		return StatusValid
	}
}

// Revocation says when, why and by whom a certificate was revoked.
type Revocation struct {
	At      time.Time `json:"at"`
	Reason  int       `json:"reason"` // RFC 5280 CRLReason
	Comment string    `json:"comment,omitempty"`
	By      string    `json:"by,omitempty"`
}

// Token is a stored enrollment token. Only the SHA-256 of the secret is
// kept; the secret itself is shown once to the admin.
type Token struct {
	ID        string    `json:"id"`
	Hash      []byte    `json:"hash"`
	CN        string    `json:"cn"`
	Profile   string    `json:"profile"`
	DNSNames  []string  `json:"dns,omitempty"`
	CreatedAt time.Time `json:"created"`
	ExpiresAt time.Time `json:"expires"`
	CreatedBy string    `json:"by,omitempty"`
	// UsedAt and Serial are set when the token is redeemed.
	UsedAt time.Time `json:"used,omitzero"`
	Serial string    `json:"serial,omitempty"`
	// Revoked is set when an admin withdraws an unused token.
	Revoked bool `json:"revoked,omitempty"`
}

// AuditEvent is one line of the audit log.
type AuditEvent struct {
	ID      string      `json:"id"`
	At      time.Time   `json:"at"`
	Actor   string      `json:"actor"`   // "token:<id>", "cert:<serial>", "admin:<how>"
	Action  AuditAction `json:"action"`  // one of AuditActions
	Subject string      `json:"subject"` // serial, token id, ...
	Detail  string      `json:"detail,omitempty"`
}

// CertQuery selects certificates for ListCerts. Empty fields match all.
type CertQuery struct {
	CNPrefix string
	Profile  string
	Status   string
	// After is the page token: the last key of the previous page.
	After string
	// Limit caps the page (default 50, at most 1000).
	Limit int
	// Now decides expired vs valid.
	Now time.Time
}

// Page sizes of the list calls: a default that fills a screen of the admin
// page, and a cap that keeps one call's answer (and its scan) bounded.
const (
	defaultCertPage  = 50
	maxCertPage      = 1000
	defaultAuditPage = 100
	maxAuditPage     = 500
)

// Page returns the page size every engine uses for q and the decoded page
// token (the index key after which the page starts; nil for the first
// page). A token that is not hex is ErrNotFound.
func (q CertQuery) Page() (limit int, after []byte, err error) {
	limit = min(cmp.Or(max(q.Limit, 0), defaultCertPage), maxCertPage)
	after, err = hex.DecodeString(q.After)
	if err != nil {
		return 0, nil, fmt.Errorf("page token %q: %w", q.After, ErrNotFound)
	}
	return limit, after, nil
}

// AuditQuery selects audit events, newest first.
type AuditQuery struct {
	Action  AuditAction
	Actor   string
	Subject string
	Before  string // page token: the ID of the last event of the previous page
	Limit   int    // default 100, at most 500
}

// Page returns the page size every engine uses for q and the decoded page
// token (nil for the first page; a token that is not hex starts from the
// newest event).
func (q AuditQuery) Page() (limit int, before []byte) {
	limit = q.Limit
	if limit <= 0 || limit > maxAuditPage {
		limit = defaultAuditPage
	}
	before, _ = hex.DecodeString(q.Before)
	if len(before) == 0 {
		before = nil
	}
	return limit, before
}

// Counts summarise the store for the dashboard.
type Counts struct {
	ByStatus  map[string]int
	ByProfile map[string]int
	// ExpiringBuckets[i] counts valid certificates expiring in hour i from now.
	ExpiringHours []int
}
