package credproc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// APIError is a refusal from CreateSession, decoded from AWS's restjson error
// shape: the code from the X-Amzn-ErrorType header or the body's __type or
// code field, the message from the body's message field. Its Error is one
// line, e.g. "CreateSession: 403 AccessDeniedException: Untrusted signing
// certificate". errors.Is(err, ErrAccessDenied) and errors.Is(err,
// ErrThrottled) match it by code.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the AWS error code, e.g. "AccessDeniedException"; empty if
	// the answer carried none.
	Code string
	// Message is the service's message (or the start of a non-JSON body).
	Message string
	// RequestID is X-Amzn-RequestId, when sent.
	RequestID string
}

// Error returns "CreateSession: <status> <code>: <message>".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CreateSession: %d", e.StatusCode)
	code := e.Code
	if code == "" {
		code = http.StatusText(e.StatusCode)
	}
	if code != "" {
		b.WriteString(" " + code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Is matches ErrAccessDenied and ErrThrottled by code.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrAccessDenied:
		return e.Code == "AccessDeniedException" || e.StatusCode == http.StatusForbidden && e.Code == ""
	case ErrThrottled:
		return e.throttling()
	}
	return false
}

// throttlingCodes are the error codes the AWS SDK's standard retryer treats
// as throttling.
var throttlingCodes = map[string]bool{
	"Throttling": true, "ThrottlingException": true, "ThrottledException": true,
	"RequestThrottledException": true, "TooManyRequestsException": true,
	"ProvisionedThroughputExceededException": true, "TransactionInProgressException": true,
	"RequestLimitExceeded": true, "BandwidthLimitExceeded": true, "LimitExceededException": true,
	"RequestThrottled": true, "SlowDown": true, "PriorRequestNotComplete": true,
	"EC2ThrottledException": true,
}

func (e *APIError) throttling() bool {
	return e.StatusCode == http.StatusTooManyRequests || throttlingCodes[e.Code]
}

// retryable reports whether the SDK's standard retryer would try again:
// 5xx answers and throttling, not other 4xx.
func (e *APIError) retryable() bool {
	return e.StatusCode >= 500 || e.throttling()
}

// maxMessage bounds the message taken from a non-JSON body.
const maxMessage = 200

// parseAPIError decodes a non-2xx answer.
func parseAPIError(resp *http.Response, body []byte) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-Requestid")}
	var doc struct {
		Type       string `json:"__type"`
		Code       string `json:"code"`
		Message    string `json:"message"`
		MessageCap string `json:"Message"`
	}
	isJSON := json.Unmarshal(body, &doc) == nil
	e.Code = sanitizeCode(resp.Header.Get("X-Amzn-Errortype"))
	if e.Code == "" && isJSON {
		e.Code = sanitizeCode(doc.Type)
		if e.Code == "" {
			e.Code = sanitizeCode(doc.Code)
		}
	}
	switch {
	case isJSON && doc.Message != "":
		e.Message = oneLine(doc.Message)
	case isJSON && doc.MessageCap != "":
		e.Message = oneLine(doc.MessageCap)
	case !isJSON:
		e.Message = oneLine(string(body))
	}
	return e
}

// sanitizeCode reduces an AWS error code to its name, as the SDK does:
// "aws.protocoltests#FooError:http://internal..." becomes "FooError".
func sanitizeCode(c string) string {
	if i := strings.IndexByte(c, ':'); i >= 0 {
		c = c[:i]
	}
	if i := strings.LastIndexByte(c, '#'); i >= 0 {
		c = c[i+1:]
	}
	return strings.TrimSpace(c)
}

// oneLine collapses whitespace and truncates s for a one-line message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
