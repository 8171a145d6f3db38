// Package anchors keeps an AWS IAM Roles Anywhere trust anchor equal to the
// CA's truth: the anchor's certificate bundle holds the CA's root(s) (old
// and new during a rotation, never more than two) and the anchor's imported
// CRL is the CA's newest CRL, pushed the moment the revocation service
// signs it.
//
// The Syncer talks to Roles Anywhere through aws-sdk-go-v2's
// service/rolesanywhere client (or anything with the same methods, see
// API); the local emulator in anchors/emulator is just another
// endpoint. Sync compares the anchor's bundle with the CA's roots by
// certificate (DER), not by text, and calls UpdateTrustAnchor only on
// drift; it never removes a certificate lanyard did not put there unless
// Config.Force is set. PublishCRL implements revocation.Publisher:
// ImportCrl once, then UpdateCrl for every newer CRL, newest wins, retried
// with backoff on throttling and server errors, stopped at final errors
// (see Retryable). Run does both in the background. Status is persisted in
// the store (meta key StatusKey) for the admin page and `lanyard anchors
// status`.
//
// TrustPolicy and SessionPolicy write the IAM documents that go with a
// profile: the role trust policy (principal rolesanywhere.amazonaws.com,
// conditions on the certificate's subject and issuer CN and the trust
// anchor) and the session policy that pins calls to source addresses.
package anchors
