// Package ca holds lanyard's certificate authority key material and the
// operations that need it.
//
// It creates a new root and intermediate CA (Init) or imports existing ones
// (Import), loads the intermediate signer from an encrypted PEM file or through
// a go.step.sm/crypto/kms URI (Load), and signs certificates and CRLs with the
// intermediate (Authority.Sign, Authority.SignLeaf, Authority.SignCRL). The
// root key is needed only by Init and may be written outside the CA folder to
// be kept offline. No exported name hands out a private key: whatever needs a
// signature asks this package for it (boulder's rule of one component per
// security context), so the CRL encoder lives here too (NewRevokedCert,
// SignCRL).
//
// A CA folder, as Init writes it (keys 0600, folder 0700, every file written
// atomically and never overwritten by Init or Import):
//
//	root.crt               the root certificate (PEM)
//	root.key               the root key, unless InitOptions.RootKeyPath puts it elsewhere
//	intermediate.crt       the issuing intermediate certificate (PEM; further
//	                       intermediates may follow it, leaf-most first)
//	intermediate.key       the intermediate key (PKCS#8 PEM, encrypted when a
//	                       passphrase is given)
//	intermediate.key.uri   only for KMS-backed CAs: the KMS URI of the intermediate key
//	admin.crt, admin.key   the admin mTLS client credential (see IsAdminCertificate)
//	roots.pem              optional, not written by Init: extra trusted roots
//	                       (the old root during a root rotation)
//	cross.crt              only during a root rotation (RotateRoot): the new
//	                       root's and the new intermediate's cross-certificates,
//	                       issued by the old root
//	retired/<serial>.*     intermediates a rotation retired, with their keys
//	                       while they still sign their CRL
//	retired/roots/<serial>/ a finished root rotation's old root, cross.crt and
//	                       old intermediates (FinishRootRotation)
//
// The CA certificates follow IAM Roles Anywhere's rules for trust anchors:
// X.509 v3, critical basicConstraints CA:TRUE (root pathlen 1, intermediate
// pathlen 0), critical keyUsage keyCertSign|cRLSign|digitalSignature,
// SHA-256 or stronger signatures, and subject and authority key identifiers.
//
// Only the softkms KMS type is compiled in by this package; a binary that wants
// another go.step.sm/crypto/kms backend (awskms, pkcs11, …) blank-imports it.
package ca
