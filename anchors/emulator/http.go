package emulator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Error types the emulator answers with (X-Amzn-ErrorType).
const (
	ErrAccessDenied          = "AccessDeniedException"
	ErrValidation            = "ValidationException"
	ErrResourceNotFound      = "ResourceNotFoundException"
	ErrThrottling            = "ThrottlingException"
	ErrInvalidSignature      = "InvalidSignatureException"
	ErrUnrecognizedClient    = "UnrecognizedClientException"
	ErrMissingAuthentication = "MissingAuthenticationTokenException"
	ErrIncompleteSignature   = "IncompleteSignatureException"
	ErrUnknownOperation      = "UnknownOperationException"
)

// ReasonHeader carries, on every refusal, the emulator's precise reason. AWS
// sends no such header; tests use it to check that the intended rule fired.
const ReasonHeader = "X-Emulator-Reason"

// Messages AWS is known to send for CreateSession refusals.
const (
	MsgUntrusted        = "Untrusted signing certificate"
	MsgInvalidSignature = "Invalid signature"
)

// maxBody bounds request bodies (a CRL of 300000 bytes is ~400 kB in base64).
const maxBody = 1 << 20

// apiError is an AWS restjson error.
type apiError struct {
	status int
	code   string
	msg    string
	reason string // for ReasonHeader and the log; msg when empty
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func newErr(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

func validation(format string, args ...any) *apiError {
	return newErr(http.StatusBadRequest, ErrValidation, fmt.Sprintf(format, args...))
}

func notFound(format string, args ...any) *apiError {
	return newErr(http.StatusNotFound, ErrResourceNotFound, fmt.Sprintf(format, args...))
}

func accessDenied(msg, reason string) *apiError {
	return &apiError{status: http.StatusForbidden, code: ErrAccessDenied, msg: msg, reason: reason}
}

func (e *Emulator) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = newErr(http.StatusInternalServerError, "InternalServerException", err.Error())
	}
	reason := ae.reason
	if reason == "" {
		reason = ae.msg
	}
	e.log.Info("emulator: refused", "method", r.Method, "path", r.URL.Path, "status", ae.status, "type", ae.code, "reason", reason)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", ae.code)
	w.Header().Set(ReasonHeader, sanitizeHeader(reason))
	if ae.code == ErrThrottling {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(ae.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": ae.msg})
}

func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return ' '
		}
		return r
	}, s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, validation("could not read the request body")
	}
	if len(body) > maxBody {
		return nil, newErr(http.StatusRequestEntityTooLarge, ErrValidation, "request body too large")
	}
	return body, nil
}

// serveHTTP routes a request: CreateSession on its own rules, everything else
// through SigV4 and the control-plane routes.
func (e *Emulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Amzn-RequestId", e.nextRequestID())
	if r.URL.Path == "/sessions" {
		if r.Method != http.MethodPost {
			e.writeError(w, r, newErr(http.StatusMethodNotAllowed, ErrValidation, "CreateSession is POST /sessions"))
			return
		}
		e.handleCreateSession(w, r)
		return
	}
	body, err := readBody(r)
	if err != nil {
		e.writeError(w, r, err)
		return
	}
	if r.URL.Path == "/" && r.Method == http.MethodPost {
		e.handleSTS(w, r, body)
		return
	}
	if err := e.verifySigV4(r, body, e.controlPlaneScope()); err != nil {
		e.writeError(w, r, err)
		return
	}
	e.mu.Lock()
	throttled := e.throttle > 0
	if throttled {
		e.throttle--
	}
	e.mu.Unlock()
	if throttled {
		e.writeError(w, r, newErr(http.StatusTooManyRequests, ErrThrottling, "Rate exceeded"))
		return
	}
	status, out, err := e.route(r, body)
	if err != nil {
		e.writeError(w, r, err)
		return
	}
	e.log.Info("emulator: ok", "method", r.Method, "path", r.URL.Path, "status", status)
	writeJSON(w, status, out)
}

// maxSkew is the SigV4 clock tolerance.
const maxSkew = 5 * time.Minute

// sigV4Scope says what verifySigV4 accepts: the service of the credential
// scope, the region ("" any: STS takes the client's), and the secret of an
// access key (or why the key is refused).
type sigV4Scope struct {
	service, region string
	secret          func(akid string, r *http.Request) (string, error)
}

// controlPlaneScope accepts the one configured access key, in the
// emulator's region, for service rolesanywhere.
func (e *Emulator) controlPlaneScope() sigV4Scope {
	return sigV4Scope{service: "rolesanywhere", region: e.region, secret: func(akid string, _ *http.Request) (string, error) {
		if akid != e.creds.AccessKeyID {
			return "", newErr(http.StatusForbidden, ErrUnrecognizedClient, "The security token included in the request is invalid.")
		}
		return e.creds.SecretAccessKey, nil
	}}
}

// verifySigV4 checks a request's standard SigV4 signature by recomputing
// it with aws-sdk-go-v2's signer over the headers the request says it
// signed, and comparing.
func (e *Emulator) verifySigV4(r *http.Request, body []byte, scope sigV4Scope) error {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return newErr(http.StatusForbidden, ErrMissingAuthentication, "Missing Authentication Token")
	}
	const prefix = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(authz, prefix) {
		return newErr(http.StatusBadRequest, ErrIncompleteSignature, "Authorization header requires the AWS4-HMAC-SHA256 algorithm")
	}
	fields := map[string]string{}
	for _, part := range strings.Split(authz[len(prefix):], ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return newErr(http.StatusBadRequest, ErrIncompleteSignature, "Authorization header is malformed")
		}
		fields[k] = v
	}
	cred, signedHeaders, signature := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	if cred == "" || signedHeaders == "" || signature == "" {
		return newErr(http.StatusBadRequest, ErrIncompleteSignature, "Authorization header requires Credential, SignedHeaders and Signature")
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return newErr(http.StatusBadRequest, ErrIncompleteSignature, "Credential must be AKID/date/region/service/aws4_request")
	}
	akid, date, region, service := parts[0], parts[1], parts[2], parts[3]
	secret, err := scope.secret(akid, r)
	if err != nil {
		return err
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return newErr(http.StatusBadRequest, ErrIncompleteSignature, "X-Amz-Date is missing or malformed")
	}
	if date != amzDate[:8] {
		return newErr(http.StatusForbidden, ErrInvalidSignature, "Credential date does not match X-Amz-Date")
	}
	if scope.region != "" && region != scope.region {
		return newErr(http.StatusForbidden, ErrInvalidSignature, fmt.Sprintf("Credential should be scoped to a valid region, not '%s'.", region))
	}
	if service != scope.service {
		return newErr(http.StatusForbidden, ErrInvalidSignature, fmt.Sprintf("Credential should be scoped to correct service: '%s', not '%s'.", scope.service, service))
	}
	now := e.now()
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return newErr(http.StatusForbidden, ErrInvalidSignature, fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - 5 min.)", amzDate, now.Add(-maxSkew).UTC().Format("20060102T150405Z"), now.UTC().Format("20060102T150405Z")))
	}

	// Rebuild the request from what was signed: the original request URI
	// (so that a mount prefix stripped by http.StripPrefix does not matter),
	// the signed headers only, and the payload hash of the raw body.
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return newErr(http.StatusBadRequest, ErrIncompleteSignature, "bad request URI")
	}
	u.Scheme, u.Host = "http", r.Host
	re := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	sawHost := false
	for _, h := range strings.Split(signedHeaders, ";") {
		switch h {
		case "host":
			sawHost = true
		case "content-length":
			re.ContentLength = int64(len(body))
		default:
			for _, v := range r.Header.Values(h) {
				re.Header.Add(h, v)
			}
		}
	}
	if !sawHost {
		return newErr(http.StatusForbidden, ErrInvalidSignature, "'Host' must be a signed header")
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payloadHash {
		return newErr(http.StatusBadRequest, ErrInvalidSignature, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	signer := v4.NewSigner()
	if err := signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		re, payloadHash, service, region, t); err != nil {
		return newErr(http.StatusInternalServerError, "InternalServerException", err.Error())
	}
	wantSig := ""
	if i := strings.LastIndex(re.Header.Get("Authorization"), "Signature="); i >= 0 {
		wantSig = re.Header.Get("Authorization")[i+len("Signature="):]
	}
	if wantSig == "" || subtle.ConstantTimeCompare([]byte(wantSig), []byte(signature)) != 1 {
		return newErr(http.StatusForbidden, ErrInvalidSignature, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
	}
	return nil
}
