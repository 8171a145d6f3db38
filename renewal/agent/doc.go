// Package agent is the client side of renewal: it keeps host folders (as
// `lanyard enroll` writes them, see package hostdir) fresh.
//
//   - [RenewDir] renews one folder once: it loads the current version
//     (resolving `current` once), makes a new key of the same type, renews
//     over mTLS with the current certificate and key, and writes the result
//     as a new immutable version (package hostdir swaps `current`
//     atomically; on any failure the previous version stays current). An
//     expired certificate cannot authenticate a renewal ([ErrExpired]); with
//     a re-enrollment token file it enrolls again instead.
//   - [Agent] keeps one or more folders fresh for months: it asks the CA for
//     each certificate's renewal window (falling back to the default window
//     when the CA cannot be reached), renews at a random moment inside it,
//     retries with capped exponential backoff and full jitter (stopping on
//     final errors, see [IsFinal]), notices a host that slept past the
//     moment (it compares the wall clock at a cheap, rare check), runs
//     post-renewal hooks, restarts a supervised `aws_signing_helper serve`
//     on the new version, and exports Prometheus metrics on an optional
//     loopback listener.
//   - [ResolveHelperArgs] is the race-free hand-off to the real
//     aws_signing_helper credential-process: it resolves `current` once and
//     names that version's files, so the helper's two separate reads (the
//     certificate, later the key) always come from one version.
//
// The enrollment record that `lanyard enroll` leaves in a folder
// (enrollment.json and ca.pem) is [hostdir.Enrollment], read with [hostdir.ReadEnrollment].
//
// Time is a dependency: everything that waits takes a [Clock].
package agent
