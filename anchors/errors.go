package anchors

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/aws/smithy-go"
)

// Sentinel errors callers branch on (with errors.Is).
var (
	// ErrForeignCertificate: the trust anchor holds a certificate that is
	// not one of the CA's roots. Sync keeps it (and reports it) unless
	// Config.Force is set.
	ErrForeignCertificate = errors.New("trust anchor holds a certificate that is not one of the CA's roots")
	// ErrBundleTooLarge: the bundle would hold more certificates than a
	// trust anchor accepts (MaxBundleCertificates).
	ErrBundleTooLarge = errors.New("trust anchor bundle too large")
	// ErrCRLTooLarge: the CRL's PEM is over Roles Anywhere's limit
	// (MaxCRLBytes); it is not pushed.
	ErrCRLTooLarge = errors.New("CRL too large for IAM Roles Anywhere")
	// ErrNoTrustAnchor: no trust anchor ARN is configured or recorded and
	// Config.Create is not set.
	ErrNoTrustAnchor = errors.New("no trust anchor")
	// ErrTrustAnchorNotFound: the configured trust anchor does not exist.
	ErrTrustAnchorNotFound = errors.New("trust anchor not found")
	// ErrUnsupportedSource: the trust anchor is not a CERTIFICATE_BUNDLE
	// anchor (e.g. AWS_ACM_PCA) and cannot be synced.
	ErrUnsupportedSource = errors.New("trust anchor source is not a certificate bundle")
	// ErrInvalidConfig: the configuration cannot be used.
	ErrInvalidConfig = errors.New("invalid anchors configuration")
	// ErrUnsupportedCNRule: a profile CN rule (a regular expression)
	// cannot be expressed as an IAM condition.
	ErrUnsupportedCNRule = errors.New("CN rule cannot be expressed in an IAM policy")
	// ErrInvalidPolicyInput: TrustPolicy or SessionPolicy got unusable input.
	ErrInvalidPolicyInput = errors.New("invalid policy input")
	// ErrClosed: the Syncer has been closed.
	ErrClosed = errors.New("anchors syncer closed")
)

// AWS error codes that mean "try again later".
var retryableCodes = map[string]bool{
	"ThrottlingException":           true,
	"TooManyRequestsException":      true,
	"RequestLimitExceeded":          true,
	"ServiceUnavailableException":   true,
	"InternalServerException":       true,
	"InternalFailure":               true,
	"RequestTimeout":                true,
	"RequestTimeoutException":       true,
	"ProvisionedThroughputExceeded": true,
}

// Retryable reports whether err is worth retrying later: throttling, a
// server error (5xx), a network failure or a timeout. Final errors
// (AccessDenied, invalid signature or credentials, Validation,
// ResourceNotFound, any other 4xx, ErrCRLTooLarge and the other sentinels of
// this package, a cancelled context) are not.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	for _, final := range []error{ErrCRLTooLarge, ErrBundleTooLarge, ErrForeignCertificate, ErrNoTrustAnchor,
		ErrTrustAnchorNotFound, ErrUnsupportedSource, ErrInvalidConfig, ErrClosed} {
		if errors.Is(err, final) {
			return false
		}
	}
	if errors.Is(err, errRetryNow) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && retryableCodes[ae.ErrorCode()] {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		s := re.HTTPStatusCode()
		if s == 0 {
			return true // no response: the request never got there
		}
		return s == http.StatusTooManyRequests || s == http.StatusRequestTimeout || s >= 500
	}
	if ae != nil {
		return false // an API error without an HTTP status: modeled, final
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// No HTTP response at all (connection refused, DNS, reset): the
	// endpoint may come back.
	var oe *smithy.OperationError
	return errors.As(err, &oe)
}

// errorCode returns the AWS error code of err ("" if none).
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
