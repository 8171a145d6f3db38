// Package trust decides, in one place, what IAM makes of an IAM Roles
// Anywhere session: the session tags a certificate yields under a profile's
// attribute mappings (SessionTags), and the verdict of a role's trust policy
// on those tags and the request context (Evaluate). The emulator calls it at
// CreateSession and `lanyard anchors explain` calls it to show why a
// certificate would be refused, so the two cannot disagree.
//
// What is modelled, with its source (shared/reference/sts-iam-ari.md §3, §4):
//
//   - Mappings: x509Subject and x509Issuer specifiers name RDNs ("CN", "OU",
//     "*" for every supported one); x509SAN specifiers are "DNS", "URI" and
//     "Name/<RDN>" ("Name" = "Name/*"), and only the first DNS name, URI and
//     directory name are mapped. Multi-valued RDNs are joined with "/" in
//     certificate order; values outside the STS tag pattern are dropped.
//   - Policies: Allow/Deny statements, Principal {"Service": …} or "*",
//     Action (with "*" wildcards, NotAction), and the condition operators
//     trust policies use: String{Equals,NotEquals,EqualsIgnoreCase,
//     NotEqualsIgnoreCase,Like,NotLike}, Arn{Equals,Like,NotEquals,NotLike},
//     IpAddress/NotIpAddress, Bool and Null, each with IfExists (except
//     Null) and the ForAnyValue:/ForAllValues: set forms. An explicit Deny
//     wins; no applicable Allow is an implicit deny. Other operators make
//     Parse fail rather than be guessed at.
//   - Actions: CreateSession needs sts:AssumeRole and sts:TagSession, and
//     sts:SetSourceIdentity when a source identity is set (the certificate
//     has a CN, or no CN and a serial); each is authorized on its own.
//
// Not documented by AWS and chosen here (marked in the code): aws:SourceIp
// in the trust evaluation is the CreateSession client's address.
package trust

import (
	"fmt"
	"math/big"
)

// Refusal reasons given before the trust policy is read, the same words
// in the emulator's refusals and in `lanyard anchors explain`.
const (
	ReasonAnchorDisabled   = "trust anchor is disabled"
	ReasonProfileDisabled  = "profile is disabled"
	ReasonNoPath           = "no path to the trust anchor"
	ReasonRevoked          = "revoked by an enabled CRL of the trust anchor"
	ReasonRoleNotInProfile = "role is not in the profile's roleArns"
)

// RevokedReason is the refusal reason for the certificate serial (subject)
// listed on the CRL named crlName.
func RevokedReason(serial *big.Int, subject, crlName string) string {
	return fmt.Sprintf("%s: serial %s (%s), CRL %s", ReasonRevoked, serial, subject, crlName)
}
