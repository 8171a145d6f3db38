package emulator

import (
	"crypto/subtle"
	"encoding/xml"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// STS, on the emulator's endpoint: GetCallerIdentity (the Query protocol,
// POST / with a form body, XML answers, errors included) for the
// temporary credentials of sessions the emulator issued, signed with
// standard SigV4 for service "sts" in any region (the client's; an
// endpoint URL makes clients sign with their configured region) and the
// session token in X-Amz-Security-Token (shared/reference/sts-iam-ari.md
// §1). Nothing else of STS is emulated.
const (
	stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"
	stsVersion   = "2011-06-15"
)

// STS error codes (Query protocol).
const (
	ErrSTSInvalidClientTokenID  = "InvalidClientTokenId"
	ErrSTSExpiredToken          = "ExpiredToken"
	ErrSTSSignatureDoesNotMatch = "SignatureDoesNotMatch"
	ErrSTSIncompleteSignature   = "IncompleteSignature"
	ErrSTSMissingAuthentication = "MissingAuthenticationToken"
	ErrSTSInvalidAction         = "InvalidAction"
)

// stsCodes maps the control plane's refusals to STS's codes.
var stsCodes = map[string]string{
	ErrUnrecognizedClient:    ErrSTSInvalidClientTokenID,
	ErrInvalidSignature:      ErrSTSSignatureDoesNotMatch,
	ErrIncompleteSignature:   ErrSTSIncompleteSignature,
	ErrMissingAuthentication: ErrSTSMissingAuthentication,
}

const msgInvalidToken = "The security token included in the request is invalid."

func (e *Emulator) handleSTS(w http.ResponseWriter, r *http.Request, body []byte) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	form, perr := url.ParseQuery(string(body))
	if mt != "application/x-www-form-urlencoded" || perr != nil {
		e.writeSTSError(w, r, newErr(http.StatusBadRequest, ErrSTSInvalidAction, "STS takes an application/x-www-form-urlencoded body"))
		return
	}
	if form.Get("Action") != "GetCallerIdentity" || form.Get("Version") != stsVersion {
		e.writeSTSError(w, r, newErr(http.StatusBadRequest, ErrSTSInvalidAction,
			"Could not find operation "+form.Get("Action")+" for version "+form.Get("Version")+" (the emulator answers GetCallerIdentity only)"))
		return
	}
	scope := sigV4Scope{service: "sts", secret: func(akid string, _ *http.Request) (string, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		c, ok := e.issued[akid]
		if !ok {
			return "", &apiError{status: http.StatusForbidden, code: ErrUnrecognizedClient, msg: msgInvalidToken,
				reason: "access key " + akid + " was not issued by this emulator"}
		}
		return c.secret, nil
	}}
	if err := e.verifySigV4(r, body, scope); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			c := *ae
			if code, ok := stsCodes[c.code]; ok {
				c.code = code
			}
			err = &c
		}
		e.writeSTSError(w, r, err)
		return
	}
	akid, _ := credentialAccessKey(r.Header.Get("Authorization"))
	e.mu.Lock()
	c := e.issued[akid]
	e.mu.Unlock()
	token := r.Header.Get("X-Amz-Security-Token")
	switch {
	case c == nil:
		e.writeSTSError(w, r, newErr(http.StatusForbidden, ErrSTSInvalidClientTokenID, msgInvalidToken))
		return
	case subtle.ConstantTimeCompare([]byte(token), []byte(c.token)) != 1:
		e.writeSTSError(w, r, &apiError{status: http.StatusForbidden, code: ErrSTSInvalidClientTokenID, msg: msgInvalidToken,
			reason: "X-Amz-Security-Token is missing or is not the session's token"})
		return
	case !e.now().Before(c.expiration):
		e.writeSTSError(w, r, newErr(http.StatusForbidden, ErrSTSExpiredToken, "The security token included in the request is expired"))
		return
	}
	type result struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	}
	out := struct {
		XMLName   xml.Name `xml:"GetCallerIdentityResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Result    result   `xml:"GetCallerIdentityResult"`
		RequestID string   `xml:"ResponseMetadata>RequestId"`
	}{Xmlns: stsNamespace, Result: result{Arn: c.arn, UserID: c.userID, Account: c.account}, RequestID: w.Header().Get("X-Amzn-RequestId")}
	e.log.Info("emulator: sts GetCallerIdentity", "arn", c.arn)
	writeXML(w, http.StatusOK, out)
}

// credentialAccessKey returns the access key of a SigV4 Authorization
// header.
func credentialAccessKey(authz string) (string, bool) {
	_, rest, ok := strings.Cut(authz, "Credential=")
	if !ok {
		return "", false
	}
	akid, _, ok := strings.Cut(rest, "/")
	return akid, ok
}

// writeSTSError answers in the Query protocol's XML error shape:
// <ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>.
func (e *Emulator) writeSTSError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = newErr(http.StatusInternalServerError, "InternalFailure", err.Error())
	}
	reason := ae.reason
	if reason == "" {
		reason = ae.msg
	}
	e.log.Info("emulator: sts refused", "status", ae.status, "code", ae.code, "reason", reason)
	w.Header().Set(ReasonHeader, sanitizeHeader(reason))
	kind := "Sender"
	if ae.status >= 500 {
		kind = "Receiver"
	}
	type errBody struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	writeXML(w, ae.status, struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Error     errBody  `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}{Xmlns: stsNamespace, Error: errBody{Type: kind, Code: ae.code, Message: ae.msg}, RequestID: w.Header().Get("X-Amzn-RequestId")})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(v)
}
