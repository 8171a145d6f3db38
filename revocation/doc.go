// Package revocation revokes certificates and keeps lanyard's certificate
// revocation list (CRL).
//
// A revocation is recorded durably in the store (together with the rest
// of the certificate's lineage, and an audit event saying who and why)
// before a new full CRL is built. The CRL is an RFC 5280 v2 CRL
// signed by the intermediate through package ca: a monotonic CRL number
// kept in the store (made durable before signing), thisUpdate and
// nextUpdate from the injected clock, the authority key identifier and
// CRL number extensions, and one entry, with its reason code, for every
// revoked certificate that has not yet expired.
//
// Revocations that arrive together share one CRL (see Config.Coalesce);
// Revoke returns only once a CRL listing its certificates exists. The
// newest CRL is kept in memory (Service.Current, for the /crl and
// /crl.pem handlers), persisted in the store so a restart serves the same
// bytes and never reuses a number, handed to a Publisher (the anchors sync,
// which imports it into the Roles Anywhere trust anchor), and rebuilt by
// Service.Run once 40% of its validity has passed, well before half.
//
// The revoked set is kept in memory, so building a CRL after a revocation
// never re-reads the store: each entry is encoded to DER once, when it is
// revoked (ca.NewRevokedCert), and package ca assembles and signs the CRL
// from those encodings (ca.Authority.SignCRL); the intermediate key never
// leaves ca.
//
// # Scope: the whole lineage
//
// Revoking any certificate of a lineage (an enrollment and every
// renewal descending from it, side branches of crash retries included)
// revokes the whole lineage, up and down, for every reason. In lanyard a
// lineage is one identity: each renewal was authorized by its
// predecessor, and the host folder holds the keys of its older versions,
// so a certificate left alive upstream could renew into a fresh,
// unrevoked one (issue 9, item 3), and one left alive downstream derives
// its authority from the revoked one. Boulder and step-ca revoke the one
// certificate asked for (boulder also blocks a compromised key for every
// certificate that shares it) because an ACME certificate is authorized
// afresh by each order; lanyard's renewals are not, so the lineage plays
// the part of boulder's blocked key, for keyCompromise and for the
// identity reasons (affiliationChanged, cessationOfOperation,
// privilegeWithdrawn, unspecified) alike. An ACME order that replaces a
// certificate (RFC 9773 `replaces`) is that certificate's renewal, in its
// lineage; one without `replaces` starts a lineage of its own. superseded is no exception:
// to retire an old certificate without stopping the host, do nothing —
// it cannot renew once issuance.RenewalRetryGrace has passed after its
// renewal, and it expires within its profile's lifetime.
//
// The files follow the concerns: service.go (Config, New, the Service),
// revoke.go (Request validation and Revoke), builder.go (the coalescing
// builder revocations wait on), crl.go (the in-memory revoked set and
// building, signing, persisting and loading a CRL), refresh.go (Rebuild,
// Tick, Run) and publish.go (handing CRLs to the Publisher).
package revocation
