package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

// RestoredProfile is the profile of the placeholder record ReapplyRestore
// writes for a revoked certificate the backup has no record of.
const RestoredProfile = "_restored"

// RestoredCN is the CN of such a placeholder.
const RestoredCN = "(issued after the backup; known only from a CRL)"

// Reapplied is one revocation found on a CRL published after the backup.
type Reapplied struct {
	Serial string // 32 lower-case hex digits, as the store keys it
	At     time.Time
	Reason int
	// NotAfter bounds the certificate's expiry for a placeholder record
	// (the backup has no record of it): the CRL must list it until then.
	NotAfter time.Time
	// Source names the CRL it came from, for the record's By field.
	Source string
}

// RestoreRequest is what ReapplyRestore re-applies to a restored store.
type RestoreRequest struct {
	Revocations []Reapplied
	// CRLNumberFloor: the CRL number is raised to it if lower, so the next
	// CRL is numbered above every CRL already published.
	CRLNumberFloor int64
	// WithdrawUnusedTokens revokes every unused token of the backup: it may
	// have been redeemed after the backup was taken, and the restored store
	// would let it be redeemed again.
	WithdrawUnusedTokens bool
	// Event is appended to the audit log, Detail set to the result.
	Event *AuditEvent
}

// RestoreResult says what ReapplyRestore changed.
type RestoreResult struct {
	// Revoked are records of the backup that were valid and are now revoked.
	Revoked []string `json:"revoked,omitempty"`
	// Placeholders are revoked certificates the backup did not know.
	Placeholders []string `json:"placeholders,omitempty"`
	// AlreadyRevoked counts revocations the backup already had.
	AlreadyRevoked int `json:"already_revoked"`
	// TokensWithdrawn are the unused tokens revoked.
	TokensWithdrawn []string `json:"tokens_withdrawn,omitempty"`
	// CRLNumberBefore and CRLNumberAfter are the stored CRL number.
	CRLNumberBefore int64 `json:"crl_number_before"`
	CRLNumberAfter  int64 `json:"crl_number_after"`
}

// ReapplyRestore re-applies to a store freshly restored from a backup what
// happened after the backup and must not be undone, in one durable
// transaction: revocations (a revoked certificate the backup holds as
// valid is revoked again, with the original time and reason; one it does
// not hold gets a placeholder record so the CRL keeps listing it), the
// CRL number (never below one already published) and, when asked, the
// unused tokens (withdrawn). Revocations of a lineage's successors are not
// chased here: the CRL lists each revoked serial itself.
func (db *DB) ReapplyRestore(ctx context.Context, req RestoreRequest) (*RestoreResult, error) {
	var res *RestoreResult
	err := db.update(ctx, func(tx *bolt.Tx) error {
		res = &RestoreResult{}
		for _, r := range req.Revocations {
			sk, err := serialKey(r.Serial)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			rev := &Revocation{At: r.At, Reason: r.Reason, By: "restore", Comment: "re-applied from " + r.Source}
			c, err := getCertTx(tx, r.Serial)
			switch {
			case err == nil && c.Revocation != nil:
				res.AlreadyRevoked++
				continue
			case err == nil:
				c.Revocation = rev
				if err := updateCertTx(tx, c); err != nil {
					return err
				}
				res.Revoked = append(res.Revoked, r.Serial)
			default:
				c = &Cert{Serial: r.Serial, CN: RestoredCN, Profile: RestoredProfile, NotBefore: r.At, NotAfter: r.NotAfter,
					IssuedAt: r.At, Revocation: rev}
				if err := putCertTx(tx, c); err != nil {
					return err
				}
				res.Placeholders = append(res.Placeholders, r.Serial)
			}
			if err := tx.Bucket(m.BucketRevoked).Put(sk, nil); err != nil {
				return err
			}
		}
		meta := tx.Bucket(m.BucketMeta)
		if raw := meta.Get(keyCRLNumber); len(raw) == 8 {
			res.CRLNumberBefore = int64(binary.BigEndian.Uint64(raw))
		}
		res.CRLNumberAfter = max(res.CRLNumberBefore, req.CRLNumberFloor)
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(res.CRLNumberAfter))
		if err := meta.Put(keyCRLNumber, buf[:]); err != nil {
			return err
		}
		if req.WithdrawUnusedTokens {
			tc := tx.Bucket(m.BucketTokens).Cursor()
			var withdraw []*Token
			for k, v := tc.First(); k != nil; k, v = tc.Next() {
				var t Token
				if err := json.Unmarshal(v, &t); err != nil {
					return fmt.Errorf("token %s: decode: %w", k, err)
				}
				if t.UsedAt.IsZero() && !t.Revoked {
					withdraw = append(withdraw, &t)
				}
			}
			for _, t := range withdraw {
				t.Revoked = true
				if err := putTokenTx(tx, t); err != nil {
					return err
				}
				res.TokensWithdrawn = append(res.TokensWithdrawn, t.ID)
			}
		}
		if req.Event != nil {
			detail, _ := json.Marshal(res)
			req.Event.Detail = string(detail)
			return appendAuditTx(tx, req.Event)
		}
		return nil
	})
	return res, err
}

// LastActivity returns the time of the newest audit event (zero for an
// empty log): roughly when a backup was taken.
func (db *DB) LastActivity() (time.Time, error) {
	var at time.Time
	err := db.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(m.BucketAudit).Cursor().Last()
		if k == nil {
			return nil
		}
		var ev AuditEvent
		if err := json.Unmarshal(v, &ev); err != nil {
			return err
		}
		at = ev.At
		return nil
	})
	return at, err
}
