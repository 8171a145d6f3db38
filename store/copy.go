package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	m "github.com/lanyard/lanyard/migrations"
)

// Sink receives every record of a store, in batches, to load it into
// another (`lanyard store copy`, and a PostgreSQL store's Backup, which
// writes a bbolt file). Loading is idempotent: a record whose key is
// already there is left as it is, and the CRL number becomes the larger
// of the two, so an interrupted copy is finished by running it again.
type Sink interface {
	LoadCerts(ctx context.Context, certs []*Cert) error
	LoadTokens(ctx context.Context, tokens []*Token) error
	LoadAudit(ctx context.Context, events []*AuditEvent) error
	// LoadSessions takes sessions by key.
	LoadSessions(ctx context.Context, sessions map[string]*Session) error
	// LoadMeta takes PutMeta values (raw JSON) by key.
	LoadMeta(ctx context.Context, values map[string][]byte) error
	LoadCRLNumber(ctx context.Context, n int64) error
}

// Exporter writes every record of a store to a Sink, from one consistent
// snapshot.
type Exporter interface {
	Export(ctx context.Context, dst Sink) error
}

// ExportBatch is how many records go to the Sink at once: large enough to
// amortise a commit, small enough to keep memory flat.
const ExportBatch = 500

var (
	_ Sink     = (*DB)(nil)
	_ Exporter = (*DB)(nil)
)

// Export writes every record to dst from one read transaction.
func (db *DB) Export(ctx context.Context, dst Sink) error {
	return db.view(func(tx *bolt.Tx) error {
		var certs []*Cert
		emit := func(c *Cert) error {
			certs = append(certs, c)
			if len(certs) == ExportBatch {
				err := dst.LoadCerts(ctx, certs)
				certs = nil
				return err
			}
			return nil
		}
		// Predecessors go before their renewals (a Sink links a renewal to
		// a predecessor it already holds), but serials are random, so key
		// order is not issue order: a certificate whose predecessor's key
		// comes later pulls it (and its own) ahead. pulled holds those sent
		// ahead of their key, until the walk reaches them.
		pulled := map[string]bool{}
		err := tx.Bucket(m.BucketCerts).ForEach(func(k, v []byte) error {
			var c Cert
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode certificate: %w", err)
			}
			if pulled[c.Serial] {
				delete(pulled, c.Serial)
				return nil
			}
			chain := []*Cert{&c}
			inChain := map[string]bool{c.Serial: true}
			for p := c.PreviousSerial; p != "" && !inChain[p]; {
				pk, err := serialKey(p)
				if err != nil || bytes.Compare(pk, k) < 0 || pulled[p] {
					break // already sent (an earlier key), or not a serial
				}
				inChain[p] = true
				prev, err := getCertTx(tx, p)
				if err != nil {
					break // tidied away
				}
				chain = append(chain, prev)
				p = prev.PreviousSerial
			}
			for i := len(chain) - 1; i >= 0; i-- {
				if i > 0 {
					pulled[chain[i].Serial] = true
				}
				if err := emit(chain[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil && len(certs) > 0 {
			err = dst.LoadCerts(ctx, certs)
		}
		if err != nil {
			return err
		}
		var toks []*Token
		err = tx.Bucket(m.BucketTokens).ForEach(func(_, v []byte) error {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("decode token: %w", err)
			}
			toks = append(toks, &t)
			if len(toks) == ExportBatch {
				err := dst.LoadTokens(ctx, toks)
				toks = nil
				return err
			}
			return nil
		})
		if err == nil && len(toks) > 0 {
			err = dst.LoadTokens(ctx, toks)
		}
		if err != nil {
			return err
		}
		var evs []*AuditEvent
		err = tx.Bucket(m.BucketAudit).ForEach(func(_, v []byte) error {
			var ev AuditEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("decode audit event: %w", err)
			}
			evs = append(evs, &ev)
			if len(evs) == ExportBatch {
				err := dst.LoadAudit(ctx, evs)
				evs = nil
				return err
			}
			return nil
		})
		if err == nil && len(evs) > 0 {
			err = dst.LoadAudit(ctx, evs)
		}
		if err != nil {
			return err
		}
		sessions := map[string]*Session{}
		if err := tx.Bucket(m.BucketSessions).ForEach(func(k, v []byte) error {
			var s Session
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("decode session: %w", err)
			}
			sessions[string(k)] = &s
			return nil
		}); err != nil {
			return err
		}
		if err := dst.LoadSessions(ctx, sessions); err != nil {
			return err
		}
		meta := map[string][]byte{}
		var crlNumber int64
		if err := tx.Bucket(m.BucketMeta).ForEach(func(k, v []byte) error {
			switch {
			case bytes.HasPrefix(k, []byte("x:")):
				meta[string(k[2:])] = append([]byte(nil), v...)
			case bytes.Equal(k, keyCRLNumber) && len(v) == 8:
				crlNumber = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		}); err != nil {
			return err
		}
		if err := dst.LoadMeta(ctx, meta); err != nil {
			return err
		}
		return dst.LoadCRLNumber(ctx, crlNumber)
	})
}

// LoadCerts adds records (with their lineage and revocation) whose serial
// is not there yet.
func (db *DB) LoadCerts(ctx context.Context, certs []*Cert) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		for _, c := range certs {
			sk, err := serialKey(c.Serial)
			if err != nil {
				return err
			}
			if tx.Bucket(m.BucketCerts).Get(sk) != nil {
				continue
			}
			if err := putCertTx(tx, c); err != nil {
				return err
			}
			if c.PreviousSerial != "" {
				// Linked only to a predecessor that is here (tidy may have
				// removed it; exports go oldest first).
				if pk, err := serialKey(c.PreviousSerial); err == nil && tx.Bucket(m.BucketCerts).Get(pk) != nil {
					if err := tx.Bucket(m.BucketRenewals).Put(append(append([]byte{}, pk...), sk...), nil); err != nil {
						return err
					}
				}
			}
			if c.Revocation != nil {
				if err := tx.Bucket(m.BucketRevoked).Put(sk, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// LoadTokens adds tokens whose ID is not there yet.
func (db *DB) LoadTokens(ctx context.Context, tokens []*Token) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		for _, t := range tokens {
			if tx.Bucket(m.BucketTokens).Get([]byte(t.ID)) != nil {
				continue
			}
			if err := putTokenTx(tx, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadAudit adds events whose ID is not there yet.
func (db *DB) LoadAudit(ctx context.Context, events []*AuditEvent) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(m.BucketAudit)
		for _, ev := range events {
			if b.Get(PrepareAudit(ev)) != nil {
				continue
			}
			if err := appendAuditTx(tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadSessions adds sessions whose key is not there yet.
func (db *DB) LoadSessions(ctx context.Context, sessions map[string]*Session) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(m.BucketSessions)
		for k, s := range sessions {
			if b.Get([]byte(k)) != nil {
				continue
			}
			raw, err := json.Marshal(s)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadMeta adds values whose key is not there yet.
func (db *DB) LoadMeta(ctx context.Context, values map[string][]byte) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(m.BucketMeta)
		for k, v := range values {
			if b.Get([]byte("x:"+k)) != nil {
				continue
			}
			if err := b.Put([]byte("x:"+k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadCRLNumber raises the CRL number to n if it is below.
func (db *DB) LoadCRLNumber(ctx context.Context, n int64) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(m.BucketMeta)
		if raw := b.Get(keyCRLNumber); len(raw) == 8 && int64(binary.BigEndian.Uint64(raw)) >= n {
			return nil
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(n))
		return b.Put(keyCRLNumber, buf[:])
	})
}
