package lanyardv1

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// FormatSerial writes a certificate serial the way the API carries it
// (Bundle.serial, Certificate.serial, GetRenewalInfoRequest.serial): at
// least 32 lower-case hex digits, left-padded with zeros. Hand-written,
// not generated.
func FormatSerial(n *big.Int) string {
	b := n.Bytes()
	if len(b) < 16 {
		p := make([]byte, 16)
		copy(p[16-len(b):], b)
		b = p
	}
	return hex.EncodeToString(b)
}

// ErrBadSerial: a serial that is not hexadecimal, or longer than RFC
// 5280's 20 octets.
var ErrBadSerial = errors.New("a certificate serial is hexadecimal (colons allowed) of at most 20 bytes")

// ParseSerial reads a serial as a person types it (upper or lower case
// hex, colons allowed, leading zeros optional) and returns it in
// FormatSerial's form with its value. It is the one parser of serials;
// everything that takes a serial from outside goes through it.
func ParseSerial(s string) (string, *big.Int, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if h == "" || len(h) > 40 {
		return "", nil, fmt.Errorf("serial %q: %w", s, ErrBadSerial)
	}
	if len(h)%2 == 1 {
		h = "0" + h
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return "", nil, fmt.Errorf("serial %q: %w", s, ErrBadSerial)
	}
	n := new(big.Int).SetBytes(raw)
	f := FormatSerial(n)
	if len(f) < len(h) { // keep leading zero bytes beyond the 32 digits
		f = h
	}
	return f, n, nil
}
