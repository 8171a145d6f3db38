package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"

	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/web"
)

// newAdminPage builds the admin web page app.Build mounts at /admin/.
func newAdminPage(a *app.App) (http.Handler, error) {
	return web.New(web.Config{Store: a.Store, Issuance: a.Issuance, Revocation: a.Revocation, Admin: a.AdminAPI,
		CAURL: a.Config.URL, Fingerprint: a.CA.Fingerprint(), SessionTTL: a.Config.Web.SessionTTL, Logger: a.Log,
		ClientCert: func(r *http.Request) *x509.Certificate { return server.ClientCert(r.Context()) }})
}

// devAdminLogin sets a fresh one-time admin password in dev mode and
// prints it with the admin certificate's path.
func devAdminLogin(ctx context.Context, a *app.App, out io.Writer) error {
	if !a.Config.Dev {
		return nil
	}
	pw, err := web.NewOneTimePassword()
	if err != nil {
		return err
	}
	if err := web.SetPassword(ctx, a.Store, pw); err != nil {
		return err
	}
	fmt.Fprintf(out, "  admin login:  password %s  (or the admin client certificate %s)\n", pw, ca.PathsIn(a.Config.CADir).AdminCert)
	return nil
}
