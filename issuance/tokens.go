package issuance

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// TokenPrefix marks lanyard enrollment tokens, so a token pasted in the
// wrong place is recognisable (and secret scanners can find it).
const TokenPrefix = "lyt1_"

// tokenSecretBytes is the token's entropy: 256 bits, beyond guessing.
const tokenSecretBytes = 32

// tokenIDBytes is how much of the token's SHA-256 names it in the store and
// in logs. Knowing the ID reveals nothing usable about the secret.
const tokenIDBytes = 8

// NewTokenSecret returns a fresh token string.
func NewTokenSecret() (string, error) {
	var b [tokenSecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ParseToken checks a presented token's form and returns its ID and the
// SHA-256 hash the store compares (in constant time). It fails with
// ErrTokenMalformed without saying more: the caller's input is a secret.
func ParseToken(tok string) (id string, hash []byte, err error) {
	tok = strings.TrimSpace(tok)
	if !strings.HasPrefix(tok, TokenPrefix) {
		return "", nil, ErrTokenMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok[len(TokenPrefix):])
	if err != nil || len(raw) != tokenSecretBytes {
		return "", nil, ErrTokenMalformed
	}
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:tokenIDBytes]), sum[:], nil
}
