// Package schedule owns the renewal window: the ARI-style (RFC 9773)
// answer to "when should this certificate be renewed?". The CA computes it
// (package issuance) and the agent falls back on it when the CA cannot be
// asked; it depends on nothing else of lanyard, so the host side stays
// small.
package schedule

import "time"

// Window reasons.
const (
	ReasonScheduled      = "scheduled"
	ReasonRevoked        = "revoked"
	ReasonCARotation     = "ca-rotation"
	ReasonProfileChanged = "profile-changed"
)

// Window is a suggested renewal window (RFC 9773's idea): renew at a
// random moment between Start and End.
type Window struct {
	Start, End time.Time
	Reason     string
}

// Scheduled returns the default window of a certificate: centred at
// two thirds of its lifetime (at half for lifetimes under ten days, so a
// short certificate keeps a wide margin), one tenth of the lifetime wide.
func Scheduled(notBefore, notAfter time.Time) Window {
	life := notAfter.Sub(notBefore)
	centre := notBefore.Add(life / 3 * 2) // life*2 overflows beyond 146 years
	if life < 10*24*time.Hour {
		centre = notBefore.Add(life / 2)
	}
	half := life / 20
	return Window{Start: centre.Add(-half), End: centre.Add(half), Reason: ReasonScheduled}
}
