package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lanyard/lanyard/store"
)

type usedNonce struct {
	nonce  string
	minted time.Time
}

// nonceMACKey returns the replicas' shared nonce key, creating it in the
// store at first use (the first replica to write it wins; the others read
// it).
func (s *Server) nonceMACKey() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nonceKey != nil {
		return s.nonceKey, nil
	}
	var k []byte
	err := s.cfg.Store.GetMeta(nonceKeyMeta, &k)
	if errors.Is(err, store.ErrNotFound) {
		k = make([]byte, 32)
		_, _ = rand.Read(k)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.cfg.Store.SwapMeta(ctx, []store.MetaWrite{{Key: nonceKeyMeta, IfAbsent: true, Value: k}}, nil)
		cancel()
		if errors.Is(err, store.ErrConflict) {
			err = s.cfg.Store.GetMeta(nonceKeyMeta, &k)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ACME nonce key: %w", err)
	}
	if len(k) < 32 {
		return nil, fmt.Errorf("ACME nonce key in the store is %d bytes, want 32", len(k))
	}
	s.nonceKey = k
	return k, nil
}

// nonceLen is mint time (8) + random (8) + HMAC-SHA256 truncated to 16.
const nonceLen = 8 + 8 + 16

func nonceMAC(k, body []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write(body)
	return m.Sum(nil)[:16]
}

func (s *Server) newNonce() (string, error) {
	k, err := s.nonceMACKey()
	if err != nil {
		return "", err
	}
	b := make([]byte, 16, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(s.cfg.Now().UnixNano()))
	_, _ = rand.Read(b[8:16])
	return base64.RawURLEncoding.EncodeToString(append(b, nonceMAC(k, b)...)), nil
}

// useNonce accepts a nonce minted by any replica, once at this one.
func (s *Server) useNonce(n string) bool {
	k, err := s.nonceMACKey()
	if err != nil {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(n)
	if err != nil || len(b) != nonceLen || !hmac.Equal(nonceMAC(k, b[:16]), b[16:]) {
		return false
	}
	minted := time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	now := s.cfg.Now()
	if now.Sub(minted) >= NonceLifetime || minted.Sub(now) > NonceSkew {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[n] || !minted.After(s.floor) {
		return false
	}
	s.seen[n] = true
	s.used = append(s.used, usedNonce{n, minted})
	for len(s.used) > 0 && (len(s.used) > s.maxNonces || now.Sub(s.used[0].minted) >= NonceLifetime+NonceSkew) {
		if len(s.used) > s.maxNonces && s.used[0].minted.After(s.floor) {
			s.floor = s.used[0].minted
		}
		delete(s.seen, s.used[0].nonce)
		s.used = s.used[1:]
	}
	return true
}
