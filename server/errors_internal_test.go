package server

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/store"
)

// The one table answers the same for a wrapped error as for the sentinel,
// and anything it does not list is Internal / 500.
func TestErrorTable(t *testing.T) {
	tests := []struct {
		err    error
		code   connect.Code
		status int
	}{
		{issuance.ErrBadTokenTTL, connect.CodeInvalidArgument, http.StatusBadRequest},
		{fmt.Errorf("revoke token 00: %w", store.ErrTokenUsed), connect.CodeFailedPrecondition, http.StatusConflict},
		{fmt.Errorf("certificate %q: %w", "00", admin.ErrNotFound), connect.CodeNotFound, http.StatusNotFound},
		{fmt.Errorf("renew 00: %w", issuance.ErrSuperseded), connect.CodeFailedPrecondition, http.StatusConflict},
		{errors.New("disk on fire"), connect.CodeInternal, http.StatusInternalServerError},
	}
	for _, tc := range tests {
		if got := codeOf(tc.err); got != tc.code {
			t.Errorf("codeOf(%v) = %v, want %v", tc.err, got, tc.code)
		}
		if got := HTTPStatus(tc.err); got != tc.status {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.status)
		}
	}
	for _, row := range errorTable {
		if row.err == nil || row.status < 400 {
			t.Errorf("row %+v: every row needs an error and an error status", row)
		}
	}
}
