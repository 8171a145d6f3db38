package ca

import "errors"

var (
	// ErrExists is returned by Init and Import when the CA folder (or the
	// root key path) already holds CA files; they are never overwritten.
	ErrExists = errors.New("ca: a CA already exists there")
	// ErrBadPassphrase is returned when a private key is encrypted and the
	// passphrase is missing or wrong.
	ErrBadPassphrase = errors.New("ca: wrong or missing passphrase for the private key")
	// ErrKeyMismatch is returned when a private key does not belong to the
	// certificate it is paired with.
	ErrKeyMismatch = errors.New("ca: private key does not match the certificate")
	// ErrNotChained is returned when an intermediate certificate is not signed
	// by the root it is paired with, or is not a usable CA certificate.
	ErrNotChained = errors.New("ca: intermediate certificate does not chain to the root")
	// ErrRotationInProgress is returned by RotateRoot and
	// RotateIntermediate while a root rotation is not finished.
	ErrRotationInProgress = errors.New("ca: a root rotation is in progress")
	// ErrRetiredStillSigning is returned by RotateIntermediate while a
	// retired intermediate still has its key (it signs a CRL): a trust
	// anchor holds two CRLs, the current intermediate's and one retired
	// one's, so a second retirement would leave a CRL out.
	ErrRetiredStillSigning = errors.New("ca: a retired intermediate still signs a CRL")
	// ErrNoRotation is returned by FinishRootRotation when no root
	// rotation is in progress.
	ErrNoRotation = errors.New("ca: no root rotation is in progress")
	// ErrRotationNotDone is returned by FinishRootRotation while a live
	// certificate still chains to the old root.
	ErrRotationNotDone = errors.New("ca: certificates still chain to the old root")
)
