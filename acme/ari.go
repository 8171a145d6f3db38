package acme

import (
	"encoding/base64"
	"math/big"
	"net/http"
	"strings"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/renewal/schedule"
)

// replacedSerial decodes an RFC 9773 certificate identifier
// (base64url(AKI) "." base64url(serial)) into a serial in store form.
func (s *Server) replacedSerial(id string) (string, *Problem) {
	aki, ser, ok := strings.Cut(id, ".")
	_, err1 := base64.RawURLEncoding.DecodeString(aki)
	b, err2 := base64.RawURLEncoding.DecodeString(ser)
	if !ok || err1 != nil || err2 != nil || len(b) == 0 {
		return "", prob(400, "malformed", "not a certificate identifier: %q", id)
	}
	return lanyardv1.FormatSerial(new(big.Int).SetBytes(b)), nil
}

// renewalInfo answers RFC 9773 from issuance's renewal window (the one the
// agent follows): a revoked certificate's window is now.
func (s *Server) renewalInfo(w http.ResponseWriter, id string) {
	serial, p := s.replacedSerial(id)
	if p != nil {
		s.fail(w, p)
		return
	}
	win, err := s.cfg.Issuer.RenewalInfo(serial)
	if err != nil {
		s.fail(w, prob(404, "malformed", "no certificate %s", serial))
		return
	}
	// "Renew now" (revoked, or the profile no longer issues it) is a
	// window that has just ended: RFC 9773 section 4.2 has clients renew
	// at once for a window in the past, where one starting now would let
	// them pick a moment in it.
	if win.Reason == schedule.ReasonRevoked || win.Reason == schedule.ReasonProfileChanged {
		now := s.cfg.Now()
		win.Start, win.End = now.Add(-time.Minute), now
	}
	w.Header().Set("Retry-After", "21600")
	writeJSON(w, 200, map[string]any{"suggestedWindow": map[string]string{
		"start": win.Start.UTC().Format(time.RFC3339), "end": win.End.UTC().Format(time.RFC3339)}})
}
