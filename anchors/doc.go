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
// Config.Force is set. CRLs arrive one way only, through PublishCRL
// (revocation.Publisher; the Syncer never asks for one): ImportCrl once,
// then UpdateCrl for every newer CRL, through one latest-wins queue that
// never goes backwards, retried with backoff on throttling and server
// errors, stopped at final errors (see Retryable). Run syncs in the
// background and re-queues the newest CRL it was handed when AWS's copy
// drifted. Status is persisted in the store (meta key StatusKey), the one
// source of the admin page and `lanyard anchors status`
// (admin.Service.AnchorStatus).
//
// TrustPolicy and SessionPolicy write the IAM documents that go with a
// profile: the role trust policy (principal rolesanywhere.amazonaws.com,
// conditions on the certificate's subject and issuer CN and the trust
// anchor) and the session policy that pins calls to source addresses.
//
// With Config.Profile, Notifications and CRLDPRevocation (anchors.manage)
// lanyard owns the rest of the chain that decides whether a host gets
// credentials: Sync also makes the profile's roles, managed and session
// policies, duration, role-session-name setting and attribute mappings,
// and the anchor's expiry notifications and crlDpRevocationEnabled, equal
// to the configuration, reporting each difference as a Change (a dry run
// only reports). SetKillSwitch disables anchor and profile at once and
// tags them KillSwitchTag, which Sync honours instead of repairing. Each
// target (account, region) has its own Syncer and status (Config.Target);
// SyncAll isolates their failures. Explain runs CreateSession's checks
// and the trust policy on the live anchor and profile with package trust,
// the code the emulator uses. Subjects reconciles Roles Anywhere's
// subjects (ListSubjects/GetSubject) with lanyard's inventory.
//
// crlDpRevocationEnabled: AWS documents only that the anchor "checks
// certificate revocation status against CRL distribution points" (SDK
// v1.33.0, Nov 2026); lanyard sets it on request and requires
// crl.distribution_url (so certificates carry a point). Unknown: fetch
// schemes, timeouts, caching, fail-open or fail-closed, intermediates,
// interplay with imported CRLs — which is why lanyard keeps importing its
// CRL either way (see emulator/crldp.go for how the emulator models it).
package anchors
