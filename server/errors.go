package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// Errors callers of the API see, beyond those of the service packages.
var (
	errNoClientCert  = errors.New("this call needs a client certificate issued by this CA (mTLS)")
	errNotAdmin      = errors.New("this call needs the admin client certificate")
	errRateLimited   = errors.New("too many requests from this client; slow down")
	errBadClientCert = errors.New("client certificate refused")
	errBadEnvelope   = errors.New("malformed request framing")
)

// errorTable is the one mapping from service errors to what a caller
// sees: the Connect code (the API) and, beside it, the HTTP status (the
// admin web page and the plain endpoints, through HTTPStatus). The first
// row whose error matches (errors.Is) wins; anything unlisted is
// Internal / 500. The HTTP status is Connect's own for the code except
// where a page says more: a used token is 409 Conflict there.
var errorTable = []struct {
	err    error
	code   connect.Code
	status int
}{
	{context.Canceled, connect.CodeCanceled, 499}, // nginx's "client closed request", as Connect uses
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded, http.StatusGatewayTimeout},
	{errRateLimited, connect.CodeResourceExhausted, http.StatusTooManyRequests},
	{errBadEnvelope, connect.CodeInvalidArgument, http.StatusBadRequest},

	{errNoClientCert, connect.CodeUnauthenticated, http.StatusUnauthorized},
	{errBadClientCert, connect.CodeUnauthenticated, http.StatusUnauthorized},
	{issuance.ErrTokenMalformed, connect.CodeUnauthenticated, http.StatusUnauthorized},
	{issuance.ErrTokenInvalid, connect.CodeUnauthenticated, http.StatusUnauthorized},
	{issuance.ErrNotRenewable, connect.CodeUnauthenticated, http.StatusUnauthorized},
	{admincred.ErrExpired, connect.CodeUnauthenticated, http.StatusUnauthorized},

	{errNotAdmin, connect.CodePermissionDenied, http.StatusForbidden},
	{admincred.ErrNotAdmin, connect.CodePermissionDenied, http.StatusForbidden},
	{admincred.ErrNotRecorded, connect.CodePermissionDenied, http.StatusForbidden},
	{admincred.ErrRevoked, connect.CodePermissionDenied, http.StatusForbidden},
	{issuance.ErrNameNotAllowed, connect.CodePermissionDenied, http.StatusForbidden},
	{issuance.ErrRevoked, connect.CodePermissionDenied, http.StatusForbidden},
	{store.ErrRevoked, connect.CodePermissionDenied, http.StatusForbidden},

	{issuance.ErrBadCSR, connect.CodeInvalidArgument, http.StatusBadRequest},
	{issuance.ErrKeyType, connect.CodeInvalidArgument, http.StatusBadRequest},
	{issuance.ErrUnknownProfile, connect.CodeInvalidArgument, http.StatusBadRequest},
	{issuance.ErrBadTokenTTL, connect.CodeInvalidArgument, http.StatusBadRequest},
	{issuance.ErrKeyReuse, connect.CodeInvalidArgument, http.StatusBadRequest},
	{admincred.ErrKeyReuse, connect.CodeInvalidArgument, http.StatusBadRequest},
	{revocation.ErrUnknownReason, connect.CodeInvalidArgument, http.StatusBadRequest},
	{revocation.ErrBadRequest, connect.CodeInvalidArgument, http.StatusBadRequest},

	{admin.ErrNotFound, connect.CodeNotFound, http.StatusNotFound},
	{store.ErrNotFound, connect.CodeNotFound, http.StatusNotFound},
	{revocation.ErrNotFound, connect.CodeNotFound, http.StatusNotFound},

	{store.ErrTokenUsed, connect.CodeFailedPrecondition, http.StatusConflict},
	{issuance.ErrSuperseded, connect.CodeFailedPrecondition, http.StatusConflict},
	{admin.ErrNoAnchors, connect.CodeFailedPrecondition, http.StatusConflict},
	// Nothing was written (a full disk, a database away); the client
	// retries (the agent does, with backoff).
	{store.ErrUnavailable, connect.CodeUnavailable, http.StatusServiceUnavailable},
}

// codeOf maps a service error to its Connect code (errorTable).
func codeOf(err error) connect.Code {
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return row.code
		}
	}
	return connect.CodeInternal
}

// HTTPStatus maps a service error to the HTTP status a page or plain
// endpoint answers with (errorTable); anything unlisted is 500.
func HTTPStatus(err error) int {
	for _, row := range errorTable {
		if errors.Is(err, row.err) {
			return row.status
		}
	}
	return http.StatusInternalServerError
}

// toConnect wraps err for the wire. Internal errors are logged with their
// detail and answered with a generic message (no internals leak).
func toConnect(log *slog.Logger, procedure string, err error) error {
	code := codeOf(err)
	if code == connect.CodeInternal {
		log.Error("request failed", "procedure", procedure, "err", err)
		return connect.NewError(code, errors.New("internal error; the CA's log has the details"))
	}
	return connect.NewError(code, err)
}
