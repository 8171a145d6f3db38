package emulator

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/anchors/x509sigv4"
)

// MaxChainLength is the most certificates X-Amz-X509-Chain may carry.
const MaxChainLength = 5

// issuedRetention is how long after expiry a session's keys are still
// known to STS (ExpiredToken rather than InvalidClientTokenId).
const issuedRetention = 24 * time.Hour

var sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

// createSessionInput is CreateSession's JSON body; the three ARNs may also
// come in the body (the documented alternative to the query string).
type createSessionInput struct {
	DurationSeconds    *int            `json:"durationSeconds"`
	RoleSessionName    *string         `json:"roleSessionName"`
	SessionName        *string         `json:"sessionName"`
	InstanceProperties json.RawMessage `json:"instanceProperties"`
	ProfileArn         string          `json:"profileArn"`
	RoleArn            string          `json:"roleArn"`
	TrustAnchorArn     string          `json:"trustAnchorArn"`
}

type credentialsJSON struct {
	AccessKeyID     string `json:"accessKeyId"`
	Expiration      string `json:"expiration"`
	SecretAccessKey string `json:"secretAccessKey"`
	SessionToken    string `json:"sessionToken"`
}

type assumedRoleUserJSON struct {
	Arn           string `json:"arn"`
	AssumedRoleID string `json:"assumedRoleId"`
}

type credentialSetJSON struct {
	AssumedRoleUser  assumedRoleUserJSON `json:"assumedRoleUser"`
	Credentials      credentialsJSON     `json:"credentials"`
	PackedPolicySize int                 `json:"packedPolicySize"`
	RoleArn          string              `json:"roleArn"`
	SourceIdentity   string              `json:"sourceIdentity"`
}

func untrusted(reason string) *apiError { return accessDenied(MsgUntrusted, reason) }
func badSignature(reason string) *apiError {
	return accessDenied(MsgInvalidSignature, reason)
}

func (e *Emulator) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		e.writeError(w, r, err)
		return
	}
	out, err := e.createSession(r, body)
	if err != nil {
		e.writeError(w, r, err)
		return
	}
	e.log.Info("emulator: session", "serial", out.sess.Serial, "cn", out.sess.CommonName, "role", out.sess.RoleArn)
	writeJSON(w, http.StatusCreated, map[string]any{
		"credentialSet": []credentialSetJSON{out.set},
		"subjectArn":    out.subjectArn,
	})
}

type sessionResult struct {
	set        credentialSetJSON
	subjectArn string
	sess       Session
}

// createSession verifies a CreateSession request as IAM Roles Anywhere does
// (reference §6) and issues credentials.
func (e *Emulator) createSession(r *http.Request, body []byte) (_ *sessionResult, err error) {
	now := e.now()

	// 1. Authorization header and its scope.
	authz := r.Header.Get(x509sigv4.HeaderAuthorization)
	if authz == "" {
		return nil, newErr(http.StatusForbidden, ErrAccessDenied, "Missing Authentication Token")
	}
	auth, err := x509sigv4.ParseAuthorization(authz)
	if err != nil {
		return nil, badSignature(err.Error())
	}
	if auth.Service != x509sigv4.Service {
		return nil, badSignature(fmt.Sprintf("credential scope service is %q, want rolesanywhere", auth.Service))
	}
	if auth.Region != e.region {
		return nil, badSignature(fmt.Sprintf("credential scope region %q, this endpoint serves %q", auth.Region, e.region))
	}
	amzDate := r.Header.Get(x509sigv4.HeaderDate)
	signedAt, err := time.Parse(x509sigv4.TimeFormat, amzDate)
	if err != nil {
		return nil, badSignature("X-Amz-Date is missing or malformed")
	}
	if auth.Date != amzDate[:8] {
		return nil, badSignature("credential scope date does not match X-Amz-Date")
	}
	if d := now.Sub(signedAt); d > maxSkew || d < -maxSkew {
		return nil, badSignature(fmt.Sprintf("signature time %s is more than 5 minutes from the server time %s", amzDate, now.UTC().Format(x509sigv4.TimeFormat)))
	}
	_, hasChainHeader := r.Header[http.CanonicalHeaderKey(x509sigv4.HeaderX509Chain)]
	required := []string{"host", "x-amz-date", "x-amz-x509"}
	if hasChainHeader {
		required = append(required, "x-amz-x509-chain")
	}
	for _, h := range required {
		if !auth.Signs(h) {
			return nil, badSignature(h + " must be a signed header")
		}
	}

	// 2. Certificates.
	leaf, err := x509sigv4.DecodeCertificate(r.Header.Get(x509sigv4.HeaderX509))
	if err != nil {
		return nil, validation("X-Amz-X509 must hold a base64 DER certificate: %v", err)
	}
	var chain []*x509.Certificate
	if hasChainHeader {
		all, err := x509sigv4.DecodeChain(r.Header.Get(x509sigv4.HeaderX509Chain))
		if err != nil {
			return nil, validation("X-Amz-X509-Chain must be comma-separated base64 DER certificates: %v", err)
		}
		if len(all) > MaxChainLength {
			return nil, validation("X-Amz-X509-Chain holds %d certificates; at most %d are allowed", len(all), MaxChainLength)
		}
		for _, c := range all {
			if !bytes.Equal(c.Raw, leaf.Raw) { // a PKCS #12 helper repeats the leaf
				chain = append(chain, c)
			}
		}
	}

	// 3. Credential serial and algorithm match the leaf; the signature verifies.
	if auth.Serial != leaf.SerialNumber.String() {
		return nil, badSignature(fmt.Sprintf("Credential serial %s is not the serial of X-Amz-X509 (%s)", auth.Serial, leaf.SerialNumber))
	}
	switch leaf.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey:
	default:
		return nil, untrusted(fmt.Sprintf("leaf key type %T is not RSA or EC", leaf.PublicKey))
	}
	creq, err := x509sigv4.CanonicalRequest(r, auth.SignedHeaders, x509sigv4.PayloadHash(body))
	if err != nil {
		return nil, badSignature(err.Error())
	}
	sts := x509sigv4.StringToSign(auth.Algorithm, amzDate, auth.Scope(), creq)
	if err := x509sigv4.VerifySignature(leaf.PublicKey, auth.Algorithm, sts, auth.Signature); err != nil {
		return nil, badSignature(err.Error())
	}
	// From here on the caller has proven the certificate's key: a refusal
	// is recorded against the subject (ListSubjects), as a success is.
	defer func() {
		if err != nil {
			e.mu.Lock()
			e.recordSubject(leaf, now, true)
			e.mu.Unlock()
		}
	}()

	// 4. Parameters: ARNs from the query string or the JSON body.
	var in createSessionInput
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, validation("request body is not valid JSON")
		}
	}
	q := r.URL.Query()
	arns := map[string]*string{"trustAnchorArn": &in.TrustAnchorArn, "profileArn": &in.ProfileArn, "roleArn": &in.RoleArn}
	for name, dst := range arns {
		if v := q.Get(name); v != "" {
			if *dst != "" && *dst != v {
				return nil, validation("%s differs between the query string and the body", name)
			}
			*dst = v
		}
		if *dst == "" {
			return nil, validation("%s is required", name)
		}
	}
	for _, a := range []string{in.TrustAnchorArn, in.ProfileArn} {
		parts := strings.SplitN(a, ":", 6)
		if len(parts) != 6 || parts[0] != "arn" || parts[2] != "rolesanywhere" {
			return nil, validation("invalid ARN %q", a)
		}
		if parts[3] != auth.Region {
			return nil, validation("ARN %s is not in the signing region %s", a, auth.Region)
		}
	}

	// Distribution points are fetched before the lock (network I/O), only
	// for an anchor that asks for them.
	var fetched map[string]dpCRL
	e.mu.Lock()
	if a := e.anchorByArn(in.TrustAnchorArn); a != nil && a.crlDp {
		e.mu.Unlock()
		fetched = e.fetchDistributionPoints(r.Context(), append([]*x509.Certificate{leaf}, chain...))
	} else {
		e.mu.Unlock()
	}

	// 5. Anchor, profile, role.
	e.mu.Lock()
	defer e.mu.Unlock() // runs before the recording defer above, which locks again
	anchor := e.anchorByArn(in.TrustAnchorArn)
	if anchor == nil {
		return nil, notFound("Trust anchor %s not found", in.TrustAnchorArn)
	}
	prof := e.profileByArn(in.ProfileArn)
	if prof == nil {
		return nil, notFound("Profile %s not found", in.ProfileArn)
	}
	if !anchor.enabled {
		return nil, untrusted(trust.ReasonAnchorDisabled)
	}
	if !prof.enabled {
		return nil, accessDenied("Profile is disabled", trust.ReasonProfileDisabled)
	}

	// 6. Leaf rules, chain and revocation.
	if err := checkLeaf(leaf, now); err != nil {
		return nil, err
	}
	path, err := e.verifyPath(anchor, leaf, chain, now)
	if err != nil {
		return nil, err
	}
	if err := e.checkRevocation(anchor, path); err != nil {
		return nil, err
	}
	if anchor.crlDp {
		if err := checkDistributionPoints(path, fetched); err != nil {
			return nil, err
		}
	}

	// 7. Role, duration, session name.
	allowed := false
	for _, ra := range prof.roleArns {
		if ra == in.RoleArn {
			allowed = true
		}
	}
	if !allowed {
		return nil, accessDenied("Access Denied", trust.ReasonRoleNotInProfile+": "+in.RoleArn)
	}
	if prof.requireInstanceProperties && (len(in.InstanceProperties) == 0 || string(in.InstanceProperties) == "null") {
		return nil, accessDenied("Access Denied", "the profile requires instanceProperties")
	}
	duration := prof.durationSeconds
	if in.DurationSeconds != nil {
		d := *in.DurationSeconds
		if d < MinDurationSeconds || d > MaxDurationSeconds {
			return nil, validation("durationSeconds must be between %d and %d", MinDurationSeconds, MaxDurationSeconds)
		}
		duration = min(duration, d)
	}
	sessionName := hexSerial(leaf)
	if in.RoleSessionName != nil {
		if !prof.acceptRoleSessionName {
			return nil, accessDenied("Access Denied", "roleSessionName sent but the profile does not accept it")
		}
		if !sessionNameRE.MatchString(*in.RoleSessionName) {
			return nil, validation("roleSessionName must match [\\w+=,.@-]{2,64}")
		}
		sessionName = *in.RoleSessionName
	}

	// 8. Session tags and the role's trust policy.
	cn := leaf.Subject.CommonName
	sourceIdentity := ""
	switch {
	case cn == "":
		sourceIdentity = "ID=" + hexSerial(leaf)
	case len(cn) <= 61:
		sourceIdentity = "CN=" + cn
	}
	tags := trust.SessionTags(leaf, prof.mappings)
	sourceIP := clientIP(r)
	if pol := e.trustPolicies[in.RoleArn]; pol != nil {
		d := trust.Evaluate(pol, trust.Request{Tags: tags, SourceArn: anchor.arn, SourceAccount: e.account,
			SourceIdentity: sourceIdentity, SourceIP: sourceIP})
		if !d.Allowed {
			return nil, accessDenied("Access Denied", d.Reason)
		}
	}

	// 9. Credentials.
	subject := e.recordSubject(leaf, now, false)
	roleName := in.RoleArn[strings.LastIndex(in.RoleArn, "/")+1:]
	roleAccount := ""
	if p := strings.Split(in.RoleArn, ":"); len(p) > 4 {
		roleAccount = p[4]
	}
	exp := now.Add(time.Duration(duration) * time.Second).UTC().Truncate(time.Second)
	akid := "ASIA" + randomString(16, upperAlnum)
	set := credentialSetJSON{
		AssumedRoleUser: assumedRoleUserJSON{
			Arn:           "arn:aws:sts::" + roleAccount + ":assumed-role/" + roleName + "/" + sessionName,
			AssumedRoleID: e.roleID(in.RoleArn) + ":" + sessionName,
		},
		Credentials: credentialsJSON{
			AccessKeyID: akid, Expiration: exp.Format(time.RFC3339),
			SecretAccessKey: randomString(40, secretAlphabet), SessionToken: randomToken(),
		},
		RoleArn: in.RoleArn, SourceIdentity: sourceIdentity,
	}
	sess := Session{
		Time: now, Serial: leaf.SerialNumber, CommonName: cn, Subject: leaf.Subject.String(),
		TrustAnchorArn: anchor.arn, ProfileArn: prof.arn, RoleArn: in.RoleArn, RoleSessionName: sessionName,
		SourceIdentity: sourceIdentity, DurationSeconds: duration, AccessKeyID: akid, Expiration: exp,
		AssumedRoleArn: set.AssumedRoleUser.Arn, AssumedRoleID: set.AssumedRoleUser.AssumedRoleID,
		Tags: tags, SessionPolicy: prof.sessionPolicy, ManagedPolicyArns: append([]string(nil), prof.managedPolicyArns...),
	}
	if sourceIP.IsValid() {
		sess.SourceIP = sourceIP.String()
	}
	e.sessions = append(e.sessions, sess)
	// Forget keys a day after they expired (bounded memory in a long dev
	// run); until then STS answers ExpiredToken for them, as AWS does.
	for k, c := range e.issued {
		if now.After(c.expiration.Add(issuedRetention)) {
			delete(e.issued, k)
		}
	}
	e.issued[akid] = &issuedCreds{secret: set.Credentials.SecretAccessKey, token: set.Credentials.SessionToken,
		expiration: exp, arn: sess.AssumedRoleArn, userID: sess.AssumedRoleID, account: roleAccount}
	return &sessionResult{set: set, subjectArn: e.arn("subject", subject.id), sess: sess}, nil
}

// roleID is the role's stable unique ID ("AROA…"), derived from its ARN so
// that every session of a role shows the same one, as IAM's does.
func (e *Emulator) roleID(roleArn string) string {
	sum := sha256.Sum256([]byte(roleArn))
	b := make([]byte, 17)
	for i := range b {
		b[i] = upperAlnum[int(sum[i])%len(upperAlnum)]
	}
	return "AROA" + string(b)
}

// clientIP is the request's peer address (invalid if it has none).
func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// checkLeaf applies the end-entity rules (trust.LeafRefusal).
func checkLeaf(c *x509.Certificate, now time.Time) error {
	if reason := trust.LeafRefusal(c, now); reason != "" {
		return untrusted(reason)
	}
	return nil
}

// verifyPath builds a PKIX path from leaf through chain to a certificate of
// the anchor's bundle and returns it (leaf first, anchor certificate last).
func (e *Emulator) verifyPath(a *trustAnchor, leaf *x509.Certificate, chain []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	roots := x509.NewCertPool()
	for _, c := range a.certs {
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	paths, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, untrusted(trust.ReasonNoPath + ": " + err.Error())
	}
	var lastErr string
	for _, p := range paths {
		ok := true
		for _, c := range p[1 : len(p)-1] { // intermediates
			if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
				ok, lastErr = false, fmt.Sprintf("intermediate %q is not a CA with keyCertSign", c.Subject)
				break
			}
			if !trust.StrongSignature(c.SignatureAlgorithm) {
				ok, lastErr = false, fmt.Sprintf("intermediate %q is signed with %s", c.Subject, c.SignatureAlgorithm)
				break
			}
		}
		if ok {
			return p, nil
		}
	}
	return nil, untrusted(lastErr)
}

// checkRevocation refuses the path when one of its certificates below the
// anchor is listed on an enabled CRL of the anchor that its issuer signed.
func (e *Emulator) checkRevocation(a *trustAnchor, path []*x509.Certificate) error {
	for i := 0; i < len(path)-1; i++ {
		cert, issuer := path[i], path[i+1]
		for _, c := range e.crls {
			if !c.enabled || c.trustAnchorArn != a.arn {
				continue
			}
			if !bytes.Equal(c.list.RawIssuer, cert.RawIssuer) || c.list.CheckSignatureFrom(issuer) != nil {
				continue
			}
			for _, rc := range c.list.RevokedCertificateEntries {
				if rc.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					return untrusted(trust.RevokedReason(cert.SerialNumber, cert.Subject.String(), c.name))
				}
			}
		}
	}
	return nil
}

func hexSerial(c *x509.Certificate) string {
	s := c.SerialNumber.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

const (
	upperAlnum     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomToken() string {
	b := make([]byte, 180)
	_, _ = rand.Read(b)
	return "IQoJb3JpZ2luX2VjE" + base64.StdEncoding.EncodeToString(b)
}
