package revocation

import (
	"context"
	"time"
)

// build is one CRL build that revocations wait for.
type build struct {
	done chan struct{}
	crl  *CRL  // set before done is closed
	err  error // likewise
}

func (b *build) failed() bool {
	select {
	case <-b.done:
		return b.err != nil
	default:
		return false
	}
}

func (b *build) wait(ctx context.Context) (*CRL, error) {
	select {
	case <-b.done:
		return b.crl, b.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// requestLocked joins the pending build (starting the builder if idle)
// and returns it. urgent skips the coalescing wait. s.mu must be held.
func (s *Service) requestLocked(urgent bool) *build {
	if s.closed {
		b := &build{done: make(chan struct{}), err: ErrClosed}
		close(b.done)
		return b
	}
	if s.pending == nil {
		s.pending = &build{done: make(chan struct{})}
	}
	b := s.pending
	if urgent {
		s.urgent = true
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	if !s.building {
		s.building = true
		s.wg.Add(1)
		go s.buildLoop()
	}
	return b
}

// buildLoop builds CRLs while requests are pending, one at a time, and
// exits when none is left. Each build lists every entry added before it
// took its snapshot, and is the build all those requests wait for.
func (s *Service) buildLoop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		urgent := s.urgent
		s.mu.Unlock()
		if !urgent && s.coalesce > 0 {
			t := time.NewTimer(s.coalesce)
			select {
			case <-t.C:
			case <-s.kick:
			case <-s.ctx.Done():
			}
			t.Stop()
		}
		s.mu.Lock()
		b := s.pending
		if b == nil {
			s.building = false
			s.mu.Unlock()
			return
		}
		s.pending, s.urgent = nil, false
		select {
		case <-s.kick:
		default:
		}
		snap := s.entries
		s.mu.Unlock()

		if s.ctx.Err() != nil {
			b.err = ErrClosed
		} else {
			b.crl, b.err = s.buildCRL(s.ctx, snap)
		}
		if b.err != nil {
			s.log.Error("CRL build failed", "err", b.err)
		} else if s.onBuild != nil {
			s.onBuild(b.crl)
		}
		close(b.done)
		if b.err == nil {
			if b.crl.listed == nil {
				s.publish(b.crl)
			}
			s.prune(b.crl.ThisUpdate)
		}
	}
}

// prune drops entries that expired by t: no CRL from t on lists them.
func (s *Service) prune(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expired := 0
	for _, e := range s.entries {
		if !e.notAfter.After(t) {
			expired++
		}
	}
	if expired == 0 {
		return
	}
	kept := make([]*entry, 0, len(s.entries)-expired)
	for _, e := range s.entries {
		if e.notAfter.After(t) {
			kept = append(kept, e)
		} else {
			delete(s.bySerial, e.key)
		}
	}
	s.entries = kept
}
