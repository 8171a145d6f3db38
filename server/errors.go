package server

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

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
)

// codeOf maps a service error to its Connect code. This is the one place
// where that mapping lives; anything unknown is Internal.
func codeOf(err error) connect.Code {
	switch {
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, errRateLimited):
		return connect.CodeResourceExhausted
	case errors.Is(err, errNoClientCert), errors.Is(err, errBadClientCert),
		errors.Is(err, issuance.ErrTokenMalformed),
		errors.Is(err, issuance.ErrTokenInvalid),
		errors.Is(err, issuance.ErrNotRenewable),
		errors.Is(err, admincred.ErrExpired):
		return connect.CodeUnauthenticated
	case errors.Is(err, errNotAdmin),
		errors.Is(err, admincred.ErrNotAdmin),
		errors.Is(err, admincred.ErrNotRecorded),
		errors.Is(err, admincred.ErrRevoked),
		errors.Is(err, issuance.ErrNameNotAllowed),
		errors.Is(err, issuance.ErrRevoked),
		errors.Is(err, store.ErrRevoked):
		return connect.CodePermissionDenied
	case errors.Is(err, issuance.ErrBadCSR),
		errors.Is(err, issuance.ErrKeyType),
		errors.Is(err, issuance.ErrUnknownProfile),
		errors.Is(err, issuance.ErrKeyReuse),
		errors.Is(err, admincred.ErrKeyReuse),
		errors.Is(err, revocation.ErrUnknownReason),
		errors.Is(err, revocation.ErrBadRequest),
		errors.Is(err, errBadArgument):
		return connect.CodeInvalidArgument
	case errors.Is(err, store.ErrNotFound), errors.Is(err, revocation.ErrNotFound):
		return connect.CodeNotFound
	case errors.Is(err, store.ErrTokenUsed), errors.Is(err, issuance.ErrSuperseded):
		return connect.CodeFailedPrecondition
	case errors.Is(err, store.ErrUnavailable):
		// Nothing was written (a full disk, a database away); the client
		// retries (the agent does, with backoff).
		return connect.CodeUnavailable
	}
	return connect.CodeInternal
}

var errBadArgument = errors.New("invalid argument")

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
