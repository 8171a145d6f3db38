package store

import (
	"context"
	"encoding/json"
	"io"
	"time"
)

// Store is what lanyard's services need from durable state. *DB (bbolt,
// one process) implements it; other engines (PostgreSQL, shared by
// several replicas) implement it too and must pass the conformance suite
// in package storetest unchanged. Services take a Store (or one of its
// parts below), never an engine's concrete type.
//
// Contract, for every engine:
//
//   - Concurrency: every method is safe for concurrent use by any number
//     of goroutines, and (for a shared engine) by any number of processes
//     on the same database. Read-modify-write rules (a token is redeemed
//     once, a revoked certificate is never renewed, the CRL number only
//     grows) hold across all of them, not just within one process.
//   - Atomicity and durability: each write method is one transaction. It
//     returns nil only once its whole effect is durable (fsynced, or
//     committed with synchronous_commit on); on error nothing of it is
//     visible. Engines may group concurrent writes into one commit (group
//     commit), never at the cost of either property.
//   - Context: a write whose context ends before it is handed to the
//     engine returns ctx.Err() and writes nothing; once handed over it
//     runs to its outcome, which is returned, so a caller never reports a
//     failure for a write that then commits.
//   - Errors: callers branch on the sentinel errors of this package with
//     errors.Is (ErrNotFound, ErrExists, ErrTokenUsed, ErrTokenExpired,
//     ErrTokenRevoked, ErrRevoked, ErrStaleCRL, ErrConflict, ErrClosed,
//     ErrUnavailable). ErrUnavailable means the engine could not be
//     reached and the write did not happen (an unknown commit outcome is
//     resolved by the engine before it answers); the client may retry.
//     Any other error is a bug or damage and is reported, not retried.
//   - Retries: engines retry internally only what is safe (a transaction
//     that failed before commit, a serialization failure). Callers do not
//     retry writes themselves, except that a client may repeat a request
//     that failed with ErrUnavailable.
//   - Reads see every write that returned nil before the read started, on
//     any replica. Reads are bounded by the engine's own timeout (reads
//     take no context so that the many read sites stay simple).
//   - Time: the store compares against the times it is given (now
//     arguments, record fields); it does not decide validity by its own
//     clock.
//
// Adding a method: add it to the part it belongs to (or a new part),
// implement it in every engine, and add its rules to package storetest;
// an engine that does not pass the suite does not build its tests.
type Store interface {
	Tokens
	Certs
	Audit
	CRLs
	Meta
	Sessions
	Operations
	Retention
}

// Tokens holds enrollment tokens. The secret is never stored, only its
// SHA-256, compared in constant time.
type Tokens interface {
	// PutToken stores a new token (ErrExists if its ID is taken) and ev.
	PutToken(ctx context.Context, t *Token, ev *AuditEvent) error
	// GetToken returns the token with id, or ErrNotFound.
	GetToken(id string) (*Token, error)
	// ListUnusedTokens returns tokens neither used, revoked nor expired at
	// now, newest first, without their hashes.
	ListUnusedTokens(now time.Time) ([]*Token, error)
	// RevokeToken withdraws an unused token (idempotent); ErrTokenUsed if
	// it was redeemed.
	RevokeToken(ctx context.Context, id string, ev *AuditEvent) error
	// RedeemToken marks the token used and records c and ev in the same
	// transaction; it fails with ErrNotFound (unknown id or wrong secret),
	// ErrTokenUsed, ErrTokenExpired or ErrTokenRevoked and then writes
	// nothing. Of any number of concurrent redemptions of one token, on
	// any replicas, exactly one succeeds.
	RedeemToken(ctx context.Context, tokenID string, tokenHash []byte, now time.Time, c *Cert, ev *AuditEvent) error
}

// Certs holds certificate records, their lineage and revocations.
type Certs interface {
	// InsertRenewal records c as the renewal of prev (ErrNotFound,
	// ErrRevoked): a renewal racing a revocation of prev either commits
	// first and is revoked with it, or is refused. Renewing twice is
	// allowed; prev then points to the newest successor and keeps, in
	// RenewedAt, the IssuedAt of its first.
	InsertRenewal(ctx context.Context, prev string, c *Cert, ev *AuditEvent) error
	// InsertCert records a certificate no token paid for.
	InsertCert(ctx context.Context, c *Cert, ev *AuditEvent) error
	// InsertCertSwap records c as InsertCert does and applies writes as
	// SwapMeta does, in one transaction: both, or (ErrConflict, or any
	// other error) neither. It is how a Meta-held authorization (an ACME
	// order) pays for exactly one certificate.
	InsertCertSwap(ctx context.Context, c *Cert, ev *AuditEvent, writes []MetaWrite) error
	// InsertRenewalSwap records c as InsertRenewal does (the renewal of
	// prev, with its errors) and applies writes as SwapMeta does, in one
	// transaction: both, or neither. It is how an ACME order that
	// replaces a certificate (RFC 9773) pays for exactly one certificate
	// that is that certificate's renewal in lanyard's lineage.
	InsertRenewalSwap(ctx context.Context, prev string, c *Cert, ev *AuditEvent, writes []MetaWrite) error
	// GetCert returns the record of serial (hex), or ErrNotFound.
	GetCert(serial string) (*Cert, error)
	// Revoke revokes serial and every renewal descending from it;
	// idempotent (first reason kept, changed false). It returns every
	// record this call revoked (and serial itself if already revoked).
	Revoke(ctx context.Context, serial string, rev Revocation, ev *AuditEvent) (revoked []*Cert, changed bool, err error)
	// SerialsByCN returns the serials of every certificate issued to cn.
	SerialsByCN(cn string) ([]string, error)
	// RevokedUnexpired returns the revoked certificates with NotAfter
	// after now (what a CRL lists), without their DER.
	RevokedUnexpired(now time.Time) ([]*Cert, error)
	// ListCerts returns one page matching q and the next page token ("" at
	// the end). Every matching record appears on exactly one page.
	ListCerts(q CertQuery) ([]*Cert, string, error)
	// CountCerts summarises records by status and profile and counts valid
	// ones expiring in each of the next hours.
	CountCerts(now time.Time, hours int) (*Counts, error)
}

// Audit is the append-only audit log.
type Audit interface {
	// AppendAudit records one event on its own (ID and At filled in when
	// empty; IDs sort by time).
	AppendAudit(ctx context.Context, ev *AuditEvent) error
	// ListAudit returns events newest first matching q and the next page
	// token.
	ListAudit(q AuditQuery) ([]*AuditEvent, string, error)
}

// CRLs holds the CRL number (RFC 5280 5.2.3: monotonically increasing).
type CRLs interface {
	// NextCRLNumber increments and returns the CRL number; the new value is
	// durable before it returns, so no number is handed out twice.
	NextCRLNumber(ctx context.Context) (int64, error)
	// CRLNumber returns the last number handed out (0 if none).
	CRLNumber() (int64, error)
	// PublishCRL stores a signed CRL as the newest, which every replica
	// then serves. It refuses (ErrStaleCRL) a number not above every CRL
	// published before, atomically, so a stale leader can never make an
	// older CRL current; on an engine with a leader lease it also refuses
	// (ErrNotLeader) a replica whose lease epoch is not the current one.
	PublishCRL(ctx context.Context, number int64, der []byte) error
	// LatestCRL returns the newest published CRL if its number is above
	// after, else ErrNotFound (so polling it is cheap).
	LatestCRL(after int64) (number int64, der []byte, err error)
	// Revocations is a counter that grows with every Revoke that changed
	// something, on any replica: the leader polls it to learn that a CRL
	// is due.
	Revocations() (int64, error)
}

// Leadership says whether this process is the one that builds CRLs and
// syncs trust anchors. Engines shared by replicas elect one with a lease;
// an embedded engine is always its own leader.
type Leadership interface {
	// Leader returns the lease epoch and whether this process leads now.
	Leader() (epoch int64, ok bool)
	// LeaderChanged returns a channel closed at the next change (nil: it
	// never changes).
	LeaderChanged() <-chan struct{}
}

// Meta holds small JSON values under a key (trust-anchor sync status,
// the admin password hash, the latest CRL).
type Meta interface {
	// PutMeta stores v (JSON) under key, replacing any value.
	PutMeta(ctx context.Context, key string, v any) error
	// GetMeta decodes the value under key into v; ErrNotFound if absent.
	GetMeta(key string, v any) error
	// SwapMeta applies writes in one transaction if every condition
	// holds (MetaWrite), else fails with ErrConflict and writes nothing;
	// ev, if set, is audited in the same transaction. Of concurrent swaps
	// conditioned on one value, on any replicas, exactly one succeeds.
	SwapMeta(ctx context.Context, writes []MetaWrite, ev *AuditEvent) error
	// ListMeta returns the raw values under keys that begin with prefix,
	// keyed by the full key.
	ListMeta(prefix string) (map[string]json.RawMessage, error)
}

// Sessions holds admin web sessions, keyed by the SHA-256 of the cookie.
type Sessions interface {
	// PutSession stores (or replaces) a session.
	PutSession(ctx context.Context, key string, s *Session) error
	// GetSession returns a session, or ErrNotFound.
	GetSession(key string) (*Session, error)
	// DeleteSession removes a session; absent is not an error.
	DeleteSession(ctx context.Context, key string) error
}

// Operations are what an operator and /metrics need.
type Operations interface {
	// Backup writes a consistent copy of the whole store to the file dst
	// (atomically, mode 0600) while the store stays online. The copy is a
	// bbolt store that Open accepts, whatever the engine.
	Backup(dst string) error
	// BackupTo streams the same copy to w.
	BackupTo(w io.Writer) error
	// Stats reports the store's size in bytes.
	Stats() (size int64, err error)
	// CommitStats reports how many durable transactions the engine made
	// and how many writes they held (their ratio is the group size).
	CommitStats() (commits, writes uint64)
	// Close waits for pending writes and releases the store.
	Close() error
}

// PoolStats are the counters of an engine's connection pool (PostgreSQL;
// the embedded engine has none), for /metrics.
type PoolStats struct {
	// Acquired, Idle and Total are connections in use, idle, and both
	// (with those being opened); Max is the pool's limit.
	Acquired, Idle, Total, Max int32
	// Acquires counts connections handed out; EmptyAcquires those that
	// had to wait for one (the pool was exhausted); AcquireWait is the
	// time all acquires took.
	Acquires, EmptyAcquires int64
	AcquireWait             time.Duration
}

// Retention prunes what the retentions no longer need, keeping every index
// consistent with the records.
type Retention interface {
	// Tidy removes certificates expired before req.CertsExpiredBefore (with
	// every index entry and lineage link naming them; a successor keeps
	// its PreviousSerial), tokens used or expired before req.TokensBefore,
	// sessions expired before req.SessionsExpiredBefore and audit events
	// before req.AuditBefore; a zero cut-off keeps that kind. It works in
	// bounded transactions, each consistent on its own, so concurrent
	// writes keep flowing and an interrupted tidy leaves a consistent
	// store. A dry run counts and writes nothing; otherwise req.Event (if
	// set) is audited with the counts in Detail.
	Tidy(ctx context.Context, req TidyRequest) (*TidyResult, error)
	// CheckIndexes reports the first disagreement between the records and
	// their indexes (ErrInconsistent), or nil.
	CheckIndexes() error
}

// Compile-time check that the bbolt engine implements the contract.
var (
	_ Store      = (*DB)(nil)
	_ Leadership = (*DB)(nil)
)
