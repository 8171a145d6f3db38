package store

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

func serialKey(serial string) ([]byte, error) {
	k, err := hex.DecodeString(serial)
	if err != nil || len(k) == 0 || len(k) > 20 {
		return nil, fmt.Errorf("serial %q: %w", serial, ErrNotFound)
	}
	return k, nil
}

func expiryKey(t time.Time, serialKey []byte) []byte {
	k := make([]byte, 8, 8+len(serialKey))
	binary.BigEndian.PutUint64(k, uint64(t.Unix()))
	return append(k, serialKey...)
}

func indexKey(prefix string, serialKey []byte) []byte {
	k := make([]byte, 0, len(prefix)+1+len(serialKey))
	k = append(k, prefix...)
	k = append(k, 0)
	return append(k, serialKey...)
}

// encodeCert is c's key in BucketCerts and its record there.
func encodeCert(c *Cert) (sk, raw []byte, err error) {
	if sk, err = serialKey(c.Serial); err != nil {
		return nil, nil, err
	}
	if raw, err = json.Marshal(c); err != nil {
		return nil, nil, err
	}
	return sk, raw, nil
}

func putCertTx(tx *bolt.Tx, c *Cert) error {
	sk, raw, err := encodeCert(c)
	if err != nil {
		return err
	}
	certs := tx.Bucket(m.BucketCerts)
	if certs.Get(sk) != nil {
		// Overwriting would drop a record (and leave stale index keys).
		return fmt.Errorf("certificate %s: %w", c.Serial, ErrExists)
	}
	if err := certs.Put(sk, raw); err != nil {
		return err
	}
	for _, ix := range certIndexes(c, sk) {
		if err := tx.Bucket(ix.bucket).Put(ix.key, nil); err != nil {
			return err
		}
	}
	return nil
}

// certIndex is one index entry of a certificate record: key in bucket.
type certIndex struct{ bucket, key []byte }

// certIndexes are the index entries every certificate record (c, under
// key sk) has: by CN, by profile and by expiry. (BucketRevoked holds the
// revoked ones only.)
func certIndexes(c *Cert, sk []byte) []certIndex {
	return []certIndex{
		{m.BucketCertsByCN, indexKey(c.CN, sk)},
		{m.BucketCertsByProf, indexKey(c.Profile, sk)},
		{m.BucketCertsByExpiry, expiryKey(c.NotAfter, sk)},
	}
}

func getCertTx(tx *bolt.Tx, serial string) (*Cert, error) {
	sk, err := serialKey(serial)
	if err != nil {
		return nil, err
	}
	raw := tx.Bucket(m.BucketCerts).Get(sk)
	if raw == nil {
		return nil, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	var c Cert
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("certificate %s: decode: %w", serial, err)
	}
	return &c, nil
}

// updateCertTx rewrites a record whose indexed fields did not change.
func updateCertTx(tx *bolt.Tx, c *Cert) error {
	sk, raw, err := encodeCert(c)
	if err != nil {
		return err
	}
	return tx.Bucket(m.BucketCerts).Put(sk, raw)
}

// RedeemToken records the certificate an enrollment token paid for and
// marks the token used, in one durable transaction. tokenHash is the
// SHA-256 of the presented secret, compared in constant time. It fails
// with ErrNotFound, ErrTokenUsed, ErrTokenExpired or ErrTokenRevoked and
// then writes nothing. Concurrent redemptions of one token: exactly one
// succeeds.
func (db *DB) RedeemToken(ctx context.Context, tokenID string, tokenHash []byte, now time.Time, c *Cert, ev *AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		tok, err := getTokenTx(tx, tokenID)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare(tok.Hash, tokenHash) != 1 {
			return fmt.Errorf("token %s: %w", tokenID, ErrNotFound)
		}
		switch {
		case tok.Revoked:
			return fmt.Errorf("token %s: %w", tokenID, ErrTokenRevoked)
		case !tok.UsedAt.IsZero():
			return fmt.Errorf("token %s: %w", tokenID, ErrTokenUsed)
		case !now.Before(tok.ExpiresAt):
			return fmt.Errorf("token %s: %w", tokenID, ErrTokenExpired)
		}
		tok.UsedAt = now
		tok.Serial = c.Serial
		if err := putTokenTx(tx, tok); err != nil {
			return err
		}
		if err := putCertTx(tx, c); err != nil {
			return err
		}
		return appendAuditTx(tx, ev)
	})
}

// InsertRenewal records c as the renewal of prev, in one durable
// transaction. It fails with ErrNotFound if prev is unknown and
// ErrRevoked if prev has been revoked (so a renewal racing a revocation
// either commits first, and is then revoked with it, or is refused).
// Renewing a certificate that was already renewed is allowed here (an
// agent that crashed after the CA answered must be able to retry; the
// issuance service bounds how long); prev then points to the newest
// successor, keeps the time of its first renewal (RenewedAt), and every
// successor is recorded.
func (db *DB) InsertRenewal(ctx context.Context, prev string, c *Cert, ev *AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		if err := renewTx(tx, prev, c); err != nil {
			return err
		}
		return appendAuditTx(tx, ev)
	})
}

// renewTx links c to prev (prev's NextSerial and RenewedAt, c's
// PreviousSerial, the renewals index) and records c: InsertRenewal's
// rule, for InsertRenewalSwap too.
func renewTx(tx *bolt.Tx, prev string, c *Cert) error {
	p, err := getCertTx(tx, prev)
	if err != nil {
		return err
	}
	if p.Revocation != nil {
		return fmt.Errorf("renew %s: %w", prev, ErrRevoked)
	}
	p.NextSerial = c.Serial
	if p.RenewedAt.IsZero() {
		p.RenewedAt = c.IssuedAt
	}
	if err := updateCertTx(tx, p); err != nil {
		return err
	}
	c.PreviousSerial = prev
	pk, _ := serialKey(prev)
	ck, _ := serialKey(c.Serial)
	if err := tx.Bucket(m.BucketRenewals).Put(append(append([]byte{}, pk...), ck...), nil); err != nil {
		return err
	}
	return putCertTx(tx, c)
}

// InsertCert records a certificate that no token paid for (the server's
// own TLS certificate, imported records, tests).
func (db *DB) InsertCert(ctx context.Context, c *Cert, ev *AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		if err := putCertTx(tx, c); err != nil {
			return err
		}
		return appendAuditTx(tx, ev)
	})
}

// GetCert returns the record of serial (hex), or ErrNotFound.
func (db *DB) GetCert(serial string) (*Cert, error) {
	var c *Cert
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		c, err = getCertTx(tx, serial)
		return err
	})
	return c, err
}

// Revoke marks serial revoked together with every renewal descending from
// it (a successor holds the same identity and was asked for by the same
// key holder). Revoking twice is idempotent: the first reason and time are
// kept, changed is false. It returns every record revoked by this call.
func (db *DB) Revoke(ctx context.Context, serial string, rev Revocation, ev *AuditEvent) (revoked []*Cert, changed bool, err error) {
	err = db.update(ctx, func(tx *bolt.Tx) error {
		revoked, changed = nil, false
		c, err := getCertTx(tx, serial)
		if err != nil {
			return err
		}
		queue := []*Cert{c}
		seen := map[string]bool{}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			if seen[cur.Serial] {
				continue
			}
			seen[cur.Serial] = true
			if cur.Revocation == nil {
				r := rev
				cur.Revocation = &r
				if err := updateCertTx(tx, cur); err != nil {
					return err
				}
				sk, _ := serialKey(cur.Serial)
				if err := tx.Bucket(m.BucketRevoked).Put(sk, nil); err != nil {
					return err
				}
				revoked = append(revoked, cur)
				changed = true
			} else if cur.Serial == serial {
				revoked = append(revoked, cur)
			}
			next, err := successorsTx(tx, cur.Serial)
			if err != nil {
				return err
			}
			queue = append(queue, next...)
		}
		if changed {
			if err := bumpRevocationsTx(tx); err != nil {
				return err
			}
		}
		if changed && ev != nil {
			return appendAuditTx(tx, ev)
		}
		return nil
	})
	return revoked, changed, err
}

func successorsTx(tx *bolt.Tx, serial string) ([]*Cert, error) {
	pk, err := serialKey(serial)
	if err != nil {
		return nil, err
	}
	var out []*Cert
	c := tx.Bucket(m.BucketRenewals).Cursor()
	for k, _ := c.Seek(pk); k != nil && bytes.HasPrefix(k, pk) && len(k) > len(pk); k, _ = c.Next() {
		n, err := getCertTx(tx, hex.EncodeToString(k[len(pk):]))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// SerialsByCN returns the serials of every certificate issued to cn.
func (db *DB) SerialsByCN(cn string) ([]string, error) {
	var out []string
	err := db.view(func(tx *bolt.Tx) error {
		prefix := append([]byte(cn), 0)
		c := tx.Bucket(m.BucketCertsByCN).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, hex.EncodeToString(k[len(prefix):]))
		}
		return nil
	})
	return out, err
}

// RevokedUnexpired returns every revoked certificate whose NotAfter is
// after now: what a CRL must list. The records come back without their
// DER (and without the fields a CRL does not need), which keeps reading
// 100,000 of them cheap.
func (db *DB) RevokedUnexpired(now time.Time) ([]*Cert, error) {
	var out []*Cert
	err := db.view(func(tx *bolt.Tx) error {
		certs := tx.Bucket(m.BucketCerts)
		return tx.Bucket(m.BucketRevoked).ForEach(func(k, _ []byte) error {
			raw := certs.Get(k)
			if raw == nil {
				return nil
			}
			var c struct {
				Serial   string      `json:"serial"`
				CN       string      `json:"cn"`
				Profile  string      `json:"profile"`
				NotAfter time.Time   `json:"naf"`
				Rev      *Revocation `json:"rev"`
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return err
			}
			if c.NotAfter.After(now) && c.Rev != nil {
				out = append(out, &Cert{Serial: c.Serial, CN: c.CN, Profile: c.Profile, NotAfter: c.NotAfter, Revocation: c.Rev})
			}
			return nil
		})
	})
	return out, err
}

// lastBelow moves cur to the last key below key, or to the last key when
// key is empty: where a walk newest first resumes after the page that
// ended at key (Seek lands on the first key >= key, and key itself was on
// the previous page).
func lastBelow(cur *bolt.Cursor, key []byte) ([]byte, []byte) {
	if len(key) == 0 {
		return cur.Last()
	}
	if k, _ := cur.Seek(key); k == nil {
		return cur.Last()
	}
	return cur.Prev()
}

// ListCerts returns one page of certificates matching q and the token of
// the next page ("" at the end). A CN-prefix search walks the CN index in
// name order, a profile search the profile index, anything else walks the
// certificates newest first. A page visits at most maxScan records, so a
// filter that matches nothing still answers quickly; the next-page token
// then lets the caller continue.
func (db *DB) ListCerts(q CertQuery) ([]*Cert, string, error) {
	const maxScan = 20000
	limit, after, err := q.Page()
	if err != nil {
		return nil, "", err
	}
	q.Limit = limit
	var out []*Cert
	next := ""
	err = db.view(func(tx *bolt.Tx) error {
		certs := tx.Bucket(m.BucketCerts)
		match := func(c *Cert) bool {
			if q.Profile != "" && c.Profile != q.Profile {
				return false
			}
			if q.Status != "" && c.Status(q.Now) != q.Status {
				return false
			}
			return q.CNPrefix == "" || strings.HasPrefix(c.CN, q.CNPrefix)
		}
		var (
			cur    *bolt.Cursor
			prefix []byte
			step   func() ([]byte, []byte)
			k, v   []byte
			index  bool
		)
		switch {
		case q.CNPrefix != "":
			cur, prefix, index = tx.Bucket(m.BucketCertsByCN).Cursor(), []byte(q.CNPrefix), true
		case q.Profile != "":
			cur, prefix, index = tx.Bucket(m.BucketCertsByProf).Cursor(), append([]byte(q.Profile), 0), true
		default:
			cur = certs.Cursor()
		}
		if index {
			step = cur.Next
			if len(after) > 0 {
				k, v = cur.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = cur.Next()
				}
			} else {
				k, v = cur.Seek(prefix)
			}
		} else {
			step = cur.Prev
			k, v = lastBelow(cur, after)
		}
		scanned := 0
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = step() {
			if len(out) == q.Limit || scanned == maxScan {
				// There is more: resume after the last key visited.
				break
			}
			scanned++
			next = hex.EncodeToString(k)
			raw := v
			if index {
				i := bytes.IndexByte(k, 0) // CNs and profile names never hold NUL (issuance refuses them)
				if i < 0 {
					continue
				}
				raw = certs.Get(k[i+1:])
				if raw == nil {
					continue
				}
			}
			var c Cert
			if err := json.Unmarshal(raw, &c); err != nil {
				return fmt.Errorf("decode certificate: %w", err)
			}
			if match(&c) {
				out = append(out, &c)
			}
		}
		if k == nil || !bytes.HasPrefix(k, prefix) {
			next = ""
		}
		return nil
	})
	return out, next, err
}
