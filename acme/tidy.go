package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lanyard/lanyard/store"
)

// OrderGrace is how long an expired, unfinalized order (and its
// authorization) is kept before Tidy removes it: a client still polling
// sees it "invalid" rather than "no such order".
const OrderGrace = OrderLifetime

// Tidy removes the ACME records nothing needs any more at now: orders
// that expired unfinalized more than OrderGrace ago, finalized orders
// whose certificate has expired or was tidied away (with their
// authorization and the certificate's account mapping), and the
// "replaced" marks of expired certificates. Accounts and EAB keys stay
// (the admin revokes those). Each removal is a conditional store write
// on the record as read, so a replica changing it meanwhile wins; a dry
// run only counts. It returns how many records it removed (or would).
func (s *Server) Tidy(ctx context.Context, now time.Time, dryRun bool) (int, error) {
	n := 0
	remove := func(writes []store.MetaWrite) error {
		if dryRun {
			n += len(writes)
			return nil
		}
		err := s.cfg.Store.SwapMeta(ctx, writes, nil)
		if errors.Is(err, store.ErrConflict) {
			return nil // changed meanwhile: the next tidy looks again
		}
		if err == nil {
			n += len(writes)
		}
		return err
	}
	certGone := func(serial string) bool {
		c, err := s.cfg.Store.GetCert(serial)
		return errors.Is(err, store.ErrNotFound) || err == nil && !now.Before(c.NotAfter)
	}
	orders, err := s.cfg.Store.ListMeta(key("order", ""))
	if err != nil {
		return 0, fmt.Errorf("acme tidy: %w", err)
	}
	for k, raw := range orders {
		var o order
		if err := json.Unmarshal(raw, &o); err != nil {
			return n, fmt.Errorf("acme tidy: %s: %w", k, err)
		}
		var writes []store.MetaWrite
		switch {
		case o.Serial == "" && !now.Before(o.Expires.Add(OrderGrace)):
			writes = []store.MetaWrite{{Key: k, If: raw, Delete: true}, {Key: key("authz", o.Authz), Delete: true}}
		case o.Serial != "" && certGone(o.Serial):
			writes = []store.MetaWrite{{Key: k, If: raw, Delete: true}, {Key: key("authz", o.Authz), Delete: true},
				{Key: key("cert", o.Serial), Delete: true}}
		default:
			continue
		}
		if err := remove(writes); err != nil {
			return n, fmt.Errorf("acme tidy: %s: %w", k, err)
		}
	}
	marks, err := s.cfg.Store.ListMeta(key("replaced", ""))
	if err != nil {
		return n, fmt.Errorf("acme tidy: %w", err)
	}
	for k, raw := range marks {
		if certGone(strings.TrimPrefix(k, key("replaced", ""))) {
			if err := remove([]store.MetaWrite{{Key: k, If: raw, Delete: true}}); err != nil {
				return n, fmt.Errorf("acme tidy: %s: %w", k, err)
			}
		}
	}
	return n, nil
}
