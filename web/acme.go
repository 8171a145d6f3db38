package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/lanyard/lanyard/acme"
	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// eabForm is the new-EAB-key form, kept on errors.
type eabForm struct {
	Profile, CN string
	Reusable    bool
}

// createdEAB is shown once, right after creation.
type createdEAB struct {
	KID, HMAC, Profile, CN, Directory string
	Reusable                          bool
}

// acmeData is the ACME page's data.
type acmeData struct {
	Form         eabForm
	ProfileNames []string
	Keys         []*acme.EAB
	Created      *createdEAB
}

func (h *handler) acmePage(w http.ResponseWriter, r *http.Request, s *store.Session, status int, p *page, d *acmeData) {
	keys, err := h.cfg.Admin.ListEABKeys()
	if err != nil {
		h.internal(w, r, s, "list the ACME keys", err)
		return
	}
	d.Keys = keys
	d.ProfileNames = h.cfg.Admin.Profiles().Names()
	if d.Form.Profile == "" {
		d.Form.Profile = h.cfg.Admin.Profiles().Default
	}
	p.Title, p.Nav, p.Session, p.Data = "ACME account keys", "acme", s, d
	h.render(w, status, "acme", p)
}

func (h *handler) acmeKeys(w http.ResponseWriter, r *http.Request, s *store.Session) {
	p := &page{}
	if r.URL.Query().Get("done") == "revoked" {
		p.Flash = "Key revoked: it opens no new account."
	}
	h.acmePage(w, r, s, http.StatusOK, p, &acmeData{})
}

func (h *handler) createEAB(w http.ResponseWriter, r *http.Request, s *store.Session) {
	f := eabForm{Profile: r.PostForm.Get("profile"), CN: strings.TrimSpace(r.PostForm.Get("cn")), Reusable: r.PostForm.Get("reusable") == "yes"}
	d := &acmeData{Form: f}
	if len(f.CN) > 253 || len(f.Profile) > maxField {
		h.acmePage(w, r, s, http.StatusBadRequest, &page{Error: "No key created: a field is too long."}, d)
		return
	}
	kid, key, profile, err := h.cfg.Admin.CreateEABKey(ctxWithoutCancel(r), admin.EABRequest{Profile: f.Profile, CN: f.CN, Reusable: f.Reusable, By: s.Actor})
	switch {
	case errors.Is(err, issuance.ErrNameNotAllowed), errors.Is(err, issuance.ErrUnknownProfile):
		h.acmePage(w, r, s, http.StatusBadRequest, &page{Error: "No key created: " + err.Error() + "."}, d)
		return
	case err != nil:
		h.internal(w, r, s, "create the ACME key", err)
		return
	}
	d.Form = eabForm{Profile: profile}
	d.Created = &createdEAB{KID: kid, HMAC: key, Profile: profile, CN: strings.ToLower(f.CN), Reusable: f.Reusable,
		Directory: h.cfg.CAURL + "/acme/" + profile + "/directory"}
	h.acmePage(w, r, s, http.StatusOK, &page{}, d)
}

// validKID: EAB key IDs are base64url (acme.Server.CreateEAB).
func validKID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (h *handler) revokeEAB(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id := r.PathValue("id")
	if !validKID(id) {
		h.fail(w, r, s, http.StatusNotFound, "No such key.")
		return
	}
	err := h.cfg.Admin.RevokeEABKey(ctxWithoutCancel(r), id, s.Actor)
	switch {
	case errors.Is(err, admin.ErrNotFound):
		h.fail(w, r, s, server.HTTPStatus(err), "No such key.")
		return
	case err != nil:
		h.internal(w, r, s, "revoke the ACME key", err)
		return
	}
	http.Redirect(w, r, "/admin/acme?done=revoked", http.StatusSeeOther)
}
