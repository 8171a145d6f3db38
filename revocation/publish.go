package revocation

import (
	"context"
)

// Publisher is the one subscriber to new CRLs: the anchors sync, which
// imports each into the Roles Anywhere trust anchor. The CRL flows one
// way, from here to the Publisher; the Publisher never asks for one.
//
// The contract:
//   - PublishCRL is called once for each CRL this Service builds, in
//     increasing CRL number order, and never with a number it was already
//     handed (SetPublisher hands the current CRL first, so a trust anchor
//     catches up at start or when a replica takes the lead). Calls never
//     overlap.
//   - It is called synchronously, from the builder (revocations do not wait
//     for it: their CRL is current before it is handed on), so it must not
//     block: it queues the CRL and returns. When the sync is slower than
//     CRL production, the Publisher's queue keeps only the newest CRL (a
//     CRL supersedes every older one: it lists every unexpired revocation),
//     so the trust anchor gets the newest, never an older one after it.
//   - CRLs adopted from the leader (a replica that follows, on a shared
//     store) are not handed on: on PostgreSQL only the leader publishes,
//     and internal/app sets the Publisher only for the leader's term.
type Publisher interface {
	// PublishCRL hands on crl; ctx ends when the Service is closed.
	PublishCRL(ctx context.Context, crl *CRL)
}

// SetPublisher sets (or, with nil, clears) the Publisher and hands it the
// current CRL, so a trust anchor catches up at start.
func (s *Service) SetPublisher(p Publisher) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.pub, s.pubLast = p, 0
	if p != nil {
		s.publishLocked(s.Current())
	}
}

// publish hands crl to the Publisher unless it already has that CRL or a
// newer one.
func (s *Service) publish(crl *CRL) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.publishLocked(crl)
}

func (s *Service) publishLocked(crl *CRL) {
	if s.pub == nil || crl == nil || crl.Number <= s.pubLast || s.ctx.Err() != nil {
		return
	}
	s.pubLast = crl.Number
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("CRL publisher panicked", "number", crl.Number, "panic", r)
		}
	}()
	s.pub.PublishCRL(s.ctx, crl)
}
