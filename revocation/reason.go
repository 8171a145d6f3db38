package revocation

import (
	"fmt"
	"strconv"
	"strings"
)

// RFC 5280 (section 5.3.1) CRLReason codes. Only those allowed for leaf
// certificates are accepted by Revoke; see AllowedReasons.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// reasonNames are the RFC 5280 names of every defined code (7 is unused).
var reasonNames = map[int]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// AllowedReasons are the reason codes a leaf certificate may be revoked
// with, in code order: cACompromise and aACompromise are about CAs,
// certificateHold would make revocation reversible, removeFromCRL belongs
// to delta CRLs.
var AllowedReasons = []int{
	ReasonUnspecified,
	ReasonKeyCompromise,
	ReasonAffiliationChanged,
	ReasonSuperseded,
	ReasonCessationOfOperation,
	ReasonPrivilegeWithdrawn,
}

// ReasonName returns the RFC 5280 name of a reason code ("keyCompromise"),
// or "reason(N)" for a code RFC 5280 does not define.
func ReasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", code)
}

// reasonAllowed reports whether code is in AllowedReasons.
func reasonAllowed(code int) bool {
	for _, c := range AllowedReasons {
		if c == code {
			return true
		}
	}
	return false
}

// allowedList is the human list used in error messages.
func allowedList() string {
	parts := make([]string, len(AllowedReasons))
	for i, c := range AllowedReasons {
		parts[i] = fmt.Sprintf("%s (%d)", ReasonName(c), c)
	}
	return strings.Join(parts, ", ")
}

// checkReason returns nil for an allowed code and an error wrapping
// ErrUnknownReason, naming the allowed codes, otherwise.
func checkReason(code int) error {
	if reasonAllowed(code) {
		return nil
	}
	if n, ok := reasonNames[code]; ok {
		return fmt.Errorf("%w: %s (%d) is not allowed for leaf certificates; use one of %s", ErrUnknownReason, n, code, allowedList())
	}
	return fmt.Errorf("%w: %d is not an RFC 5280 reason code; use one of %s", ErrUnknownReason, code, allowedList())
}

// normalizeReason folds case and drops '-', '_' and spaces, so
// "key-compromise", "KEY_COMPROMISE" and "keyCompromise" are one name.
func normalizeReason(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', ' ':
			return -1
		}
		return r
	}, strings.ToLower(s))
}

// ParseReason parses a reason given as its RFC 5280 name
// ("keyCompromise"; case, '-', '_' and spaces are ignored, so
// "key-compromise" works too) or its number ("1"). The empty string means
// unspecified (0). A code that is not allowed for leaf certificates (see
// AllowedReasons) fails with an error wrapping ErrUnknownReason.
func ParseReason(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ReasonUnspecified, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if err := checkReason(n); err != nil {
			return 0, err
		}
		return n, nil
	}
	want := normalizeReason(s)
	for code, name := range reasonNames {
		if normalizeReason(name) == want {
			if err := checkReason(code); err != nil {
				return 0, err
			}
			return code, nil
		}
	}
	return 0, fmt.Errorf("%w: %q; use one of %s", ErrUnknownReason, s, allowedList())
}
