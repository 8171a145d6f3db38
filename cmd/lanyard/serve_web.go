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
	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/web"
)

// newAdminPage builds the admin web page app.Build mounts at /admin/.
func newAdminPage(a *app.App) (http.Handler, error) {
	var anchorStatus func() web.AnchorStatus
	if a.Config.Anchors.Enabled || a.Config.Anchors.Emulator {
		anchorStatus = func() web.AnchorStatus { return readAnchorStatus(a.Store) }
	}
	return web.New(web.Config{Store: a.Store, Issuance: a.Issuance, Revocation: a.Revocation, Admin: a.AdminAPI, Anchors: anchorStatus,
		CAURL: a.Config.URL, Fingerprint: a.CA.Fingerprint(), SessionTTL: a.Config.Web.SessionTTL, Logger: a.Log,
		ClientCert: func(r *http.Request) *x509.Certificate { return server.ClientCert(r.Context()) }})
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
	out := web.AnchorStatus{LastSync: st.LastSync, Drift: st.Drift, CRLNumber: st.CRLNumber, CRLReachedAt: st.CRLPushedAt, Err: msg,
		KillSwitch: st.KillSwitch}
	if sum := st.Subjects; sum != nil {
		out.SubjectsAt, out.SubjectsSeen, out.SubjectsTotal, out.SubjectsErr = sum.At, sum.Seen, sum.Total, sum.Err
		for _, f := range sum.Findings {
			out.SubjectFindings = append(out.SubjectFindings, fmt.Sprintf("%s: %s (serial %s) %s", f.Kind, f.Subject, f.Serial.Text(16), f.Detail))
		}
	}
	return out
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
