package main

// The KMS backends the binary links besides package ca's softkms. The
// pkcs11 KMS (a CA key in an HSM or SoftHSM token, `kms: "pkcs11:…"`)
// needs cgo; a CGO_ENABLED=0 build (the container image) still builds, and
// a pkcs11: URI then fails to open with go.step.sm/crypto's "not compiled"
// error.
import _ "go.step.sm/crypto/kms/pkcs11"
