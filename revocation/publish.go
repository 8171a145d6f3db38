package revocation

import (
	"context"
)

// Publisher receives every new CRL (the anchors sync pushes it to the
// Roles Anywhere trust anchor at once). It is called from a goroutine of
// the Service, never concurrently with itself; it must not block for long
// (it may queue). When CRLs are built faster than it returns, only the
// newest is handed on.
type Publisher interface {
	// PublishCRL hands on crl; ctx ends when the Service is closed.
	PublishCRL(ctx context.Context, crl *CRL)
}

type publisherBox struct{ p Publisher }

// SetPublisher sets (or, with nil, clears) the Publisher and hands it the
// current CRL, so a trust anchor catches up at start.
func (s *Service) SetPublisher(p Publisher) {
	s.pub.Store(&publisherBox{p: p})
	if p != nil {
		s.publish(s.Current())
	}
}

// publish hands crl to the Publisher from the publishing goroutine,
// starting it when idle. A newer CRL replaces one not yet handed on.
func (s *Service) publish(crl *CRL) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if s.ctx.Err() != nil {
		return
	}
	if s.pubNext == nil || crl.Number >= s.pubNext.Number {
		s.pubNext = crl
	}
	if !s.publishing {
		s.publishing = true
		s.wg.Add(1)
		go s.publishLoop()
	}
}

func (s *Service) publishLoop() {
	defer s.wg.Done()
	for {
		s.pubMu.Lock()
		crl := s.pubNext
		s.pubNext = nil
		if crl == nil {
			s.publishing = false
			s.pubMu.Unlock()
			return
		}
		s.pubMu.Unlock()
		if box := s.pub.Load(); box != nil && box.p != nil {
			s.callPublisher(box.p, crl)
		}
	}
}

func (s *Service) callPublisher(p Publisher, crl *CRL) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("CRL publisher panicked", "number", crl.Number, "panic", r)
		}
	}()
	p.PublishCRL(s.ctx, crl)
}
