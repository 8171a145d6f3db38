package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lanyard/lanyard/anchors"
	"github.com/lanyard/lanyard/ca"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/web"
)

func init() {
	startHooks = append(startHooks, startWeb)
	devWelcomeExtra = append(devWelcomeExtra, devAdminLogin)
}

// startWeb builds the admin web page and mounts it at /admin/.
func startWeb(_ context.Context, a *app, _ io.Writer) error {
	var anchorStatus func() web.AnchorStatus
	if a.cfg.Anchors.Enabled || a.cfg.Anchors.Emulator {
		anchorStatus = func() web.AnchorStatus { return readAnchorStatus(a.db) }
	}
	h, err := web.New(web.Config{Store: a.db, Issuance: a.iss, Revocation: a.rev, Anchors: anchorStatus,
		CAURL: a.cfg.URL, Fingerprint: a.ca.Fingerprint(), SessionTTL: a.cfg.Web.SessionTTL, Logger: a.log,
		ClientCert: func(r *http.Request) *x509.Certificate { return server.ClientCert(r.Context()) }})
	if err != nil {
		return fmt.Errorf("admin web page: %w", err)
	}
	a.opts.Web = h
	return nil
}

// readAnchorStatus reads the anchors sync's persisted status from the
// store, lazily on every page view; none yet means "never synced".
func readAnchorStatus(db store.Meta) web.AnchorStatus {
	st, err := anchors.LoadStatus(db)
	if err != nil {
		if errors.Is(err, anchors.ErrNoStatus) {
			return web.AnchorStatus{}
		}
		return web.AnchorStatus{Err: err.Error()}
	}
	msg := st.LastError
	if st.CRLError != "" {
		msg = strings.TrimPrefix(msg+"; ", "; ") + fmt.Sprintf("CRL #%d push failed: %s", st.CRLErrorNumber, st.CRLError)
	}
	return web.AnchorStatus{LastSync: st.LastSync, Drift: st.Drift, CRLNumber: st.CRLNumber, CRLReachedAt: st.CRLPushedAt, Err: msg}
}

// devAdminLogin sets a fresh one-time admin password in dev mode and
// prints it with the admin certificate's path.
func devAdminLogin(ctx context.Context, a *app, out io.Writer) error {
	if !a.cfg.Dev {
		return nil
	}
	pw, err := web.NewOneTimePassword()
	if err != nil {
		return err
	}
	if err := web.SetPassword(ctx, a.db, pw); err != nil {
		return err
	}
	fmt.Fprintf(out, "  admin login:  password %s  (or the admin client certificate %s)\n", pw, ca.PathsIn(a.cfg.CADir).AdminCert)
	return nil
}
