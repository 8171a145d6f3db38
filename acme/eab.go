package acme

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lanyard/lanyard/store"
)

// EAB describes an external account binding key, without its secret.
type EAB struct {
	ID       string
	Profile  string
	CN       string // "" : any CN the profile allows
	Reusable bool
	Used     bool
	Revoked  bool
	Created  time.Time
}

func (k *eabKey) view() *EAB {
	return &EAB{ID: k.ID, Profile: k.Profile, CN: k.CN, Reusable: k.Reusable, Used: k.Used, Revoked: k.Revoked, Created: k.Created}
}

// CreateEAB mints an EAB key for profile (optionally bound to cn, which
// the profile must allow); the HMAC key is returned once, base64url, and
// stored only in the store. by is audited.
func (s *Server) CreateEAB(ctx context.Context, profile, cn string, reusable bool, by string) (kid, hmacKey string, err error) {
	p, err := s.cfg.Issuer.Profiles().Get(profile)
	if err != nil {
		return "", "", err
	}
	cn = strings.ToLower(strings.TrimSpace(cn))
	if cn != "" {
		if err := p.CheckNames(cn, nil); err != nil {
			return "", "", err
		}
	}
	k := &eabKey{ID: randID(12), Key: make([]byte, 32), Profile: p.Name, CN: cn, Reusable: reusable, Created: s.cfg.Now()}
	_, _ = rand.Read(k.Key)
	ev := &store.AuditEvent{At: k.Created, Actor: by, Action: store.ActionACMEEABCreate, Subject: k.ID,
		Detail: fmt.Sprintf("profile=%s cn=%s reusable=%t", p.Name, cn, reusable)}
	if err := s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{{Key: key("eab", k.ID), IfAbsent: true, Value: k}}, ev); err != nil {
		return "", "", fmt.Errorf("store EAB key: %w", err)
	}
	return k.ID, base64.RawURLEncoding.EncodeToString(k.Key), nil
}

// ListEAB returns every EAB key (used and revoked ones too), newest first.
func (s *Server) ListEAB() ([]*EAB, error) {
	raw, err := s.cfg.Store.ListMeta(key("eab", ""))
	if err != nil {
		return nil, fmt.Errorf("list EAB keys: %w", err)
	}
	out := make([]*EAB, 0, len(raw))
	for k, v := range raw {
		var e eabKey
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("EAB key %s: %w", k, err)
		}
		out = append(out, e.view())
	}
	slices.SortFunc(out, func(a, b *EAB) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// RevokeEAB withdraws an EAB key: no new account may bind it (accounts
// already opened with it keep working; deactivate them or revoke their
// certificates). Revoking twice is not an error; an unknown kid is
// store.ErrNotFound.
func (s *Server) RevokeEAB(ctx context.Context, kid, by string) error {
	for {
		var k eabKey
		if err := s.get("eab", kid, &k); err != nil {
			return fmt.Errorf("EAB key %q: %w", kid, err)
		}
		if k.Revoked {
			return nil
		}
		old := k
		k.Revoked = true
		err := s.swap(ctx, "eab", kid, &old, &k, &store.AuditEvent{At: s.cfg.Now(), Actor: by, Action: store.ActionACMEEABRevoke, Subject: kid})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}
