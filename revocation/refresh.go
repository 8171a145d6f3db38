package revocation

import (
	"context"
	"fmt"
	"time"
)

const (
	// runMaxWait caps how long Run sleeps between looks at the clock, so a
	// clock that jumps (suspend, an injected clock) is noticed.
	runMaxWait = time.Minute
	// runRetry is how long Run waits after a failed refresh.
	runRetry = 30 * time.Second
)

// Rebuild re-reads the revoked certificates from the store (catching any
// revoked behind the Service's back), builds a new CRL at once and returns
// it.
func (s *Service) Rebuild(ctx context.Context) (*CRL, error) {
	added, err := s.reload(s.now())
	if err != nil {
		return nil, fmt.Errorf("rebuild CRL: %w", err)
	}
	s.mu.Lock()
	b := s.requestLocked(true)
	for _, e := range added {
		e.build = b
	}
	s.mu.Unlock()
	crl, err := b.wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild CRL: %w", err)
	}
	return crl, nil
}

// Tick rebuilds the CRL when, at now, it is due (see CRL.RefreshAt) and
// reports whether it did. Run calls it; tests call it with their clock.
func (s *Service) Tick(ctx context.Context, now time.Time) (bool, error) {
	if now.Before(s.Current().RefreshAt()) {
		return false, nil
	}
	if _, err := s.Rebuild(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// Run keeps the CRL fresh until ctx ends: it sleeps until the current
// CRL's refresh time by the Service's clock (looking at the clock at least
// every minute) and then calls Tick, retrying after a failure.
func (s *Service) Run(ctx context.Context) {
	for ctx.Err() == nil {
		wait := s.Current().RefreshAt().Sub(s.now())
		if wait <= 0 {
			if _, err := s.Tick(ctx, s.now()); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error("CRL refresh failed", "err", err, "retry_in", runRetry)
				wait = runRetry
			} else {
				wait = max(s.Current().RefreshAt().Sub(s.now()), time.Second)
			}
		}
		t := time.NewTimer(min(wait, runMaxWait))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
