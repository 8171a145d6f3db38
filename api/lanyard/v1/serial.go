package lanyardv1

import (
	"encoding/hex"
	"math/big"
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
