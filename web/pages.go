package web

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lanyard/lanyard/acme"
	"github.com/lanyard/lanyard/admin"
	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/anchors"
	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/issuance"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// expiryHours is how far the dashboard's expiry chart looks: 14 days.
const expiryHours = 14 * 24

// pageSize is how many rows a list page shows.
const pageSize = 50

// dashboardData is the dashboard's data.
type dashboardData struct {
	Counts   *store.Counts
	Total    int
	Profiles []profileCount
	Hours    chart
	Days     chart
	Anchors  *AnchorStatus
	CRL      *revocation.CRL
	Events   []*store.AuditEvent
	// Warnings are doctor-style lines shown first (the admin credential
	// about to expire).
	Warnings []string
}

type profileCount struct {
	Name  string
	Count int
}

// anchorStatus is the default target's trust-anchor sync status (nil: the
// sync is not configured); a status that cannot be read is shown as its
// error.
func (h *handler) anchorStatus() *AnchorStatus {
	targets, err := h.cfg.Admin.AnchorStatus()
	switch {
	case errors.Is(err, admin.ErrNoAnchors):
		return nil
	case err != nil:
		return &AnchorStatus{Err: err.Error()}
	case len(targets) == 0 || targets[0].Status == nil:
		return &AnchorStatus{} // never synced
	}
	st := anchorView(targets[0].Status)
	return &st
}

// anchorView is what the pages show of a recorded status.
func anchorView(st *anchors.Status) AnchorStatus {
	msg := st.LastError
	if st.CRLError != "" {
		msg = strings.TrimPrefix(msg+"; ", "; ") + fmt.Sprintf("CRL #%d push failed: %s", st.CRLErrorNumber, st.CRLError)
	}
	out := AnchorStatus{LastSync: st.LastSync, Drift: st.Drift, CRLNumber: st.CRLNumber, CRLReachedAt: st.CRLPushedAt, Err: msg,
		KillSwitch: st.KillSwitch}
	if sum := st.Subjects; sum != nil {
		out.SubjectsAt, out.SubjectsSeen, out.SubjectsTotal, out.SubjectsErr = sum.At, sum.Seen, sum.Total, sum.Err
		for _, f := range sum.Findings {
			out.SubjectFindings = append(out.SubjectFindings, fmt.Sprintf("%s: %s (serial %s) %s", f.Kind, f.Subject, lanyardv1.FormatSerial(f.Serial), f.Detail))
		}
	}
	return out
}

func (h *handler) dashboard(w http.ResponseWriter, r *http.Request, s *store.Session) {
	counts, err := h.cfg.Admin.Counts(expiryHours)
	if err != nil {
		h.internal(w, r, s, "count certificates", err)
		return
	}
	events, _, err := h.cfg.Admin.ListAudit(store.AuditQuery{Limit: 10})
	if err != nil {
		h.internal(w, r, s, "read the audit log", err)
		return
	}
	d := dashboardData{Counts: counts, Anchors: h.anchorStatus(), CRL: h.cfg.Admin.CRL(), Events: events}
	if warn, err := admincred.StoreWarning(h.cfg.Store, h.cfg.Now()); err != nil {
		h.log.Error("web: check the admin credential", "err", err)
	} else if warn != "" {
		d.Warnings = append(d.Warnings, warn)
	}
	for name, n := range counts.ByProfile {
		d.Profiles = append(d.Profiles, profileCount{name, n})
		d.Total += n
	}
	slices.SortFunc(d.Profiles, func(a, b profileCount) int { return strings.Compare(a.Name, b.Name) })
	d.Hours, d.Days = expiryCharts(counts.ExpiringHours)
	h.render(w, http.StatusOK, "dashboard", &page{Title: "Dashboard", Nav: "dashboard", Session: s, Data: d})
}

// certQuery is the certificate search form.
type certQuery struct {
	CN, Serial, Profile, Status, After string
}

// certsData is the certificate list's data.
type certsData struct {
	Q            certQuery
	ProfileNames []string
	Statuses     []string
	Rows         []certRow
	pageLinks
}

// pageLinks are a search page's links to its next and first pages (""
// for none) and its note: why nothing matches, or why a page is short.
type pageLinks struct {
	Note        string
	First, Next string
}

// setLinks sets the links of a page of n rows: to the next page when
// there is one (next: its token), with short as the note when the page
// holds fewer than pageSize rows (the scan stopped early), and to the
// first page unless this is it (at: this page's token). link makes a
// page's address from its token.
func (l *pageLinks) setLinks(link func(token string) string, next, at string, n int, short string) {
	if next != "" {
		l.Next = link(next)
		if n < pageSize {
			l.Note = short
		}
	}
	if at != "" {
		l.First = link("")
	}
}

type certRow struct {
	Serial, CN, Profile, Status string
	NotAfter                    time.Time
}

// normalizeSerial accepts a serial in hex (either case, colons allowed) and
// returns lanyard's 32-digit lower-case form; ok is false if it is not hex.
func normalizeSerial(s string) (string, bool) {
	f, _, err := lanyardv1.ParseSerial(s)
	return f, err == nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (h *handler) certs(w http.ResponseWriter, r *http.Request, s *store.Session) {
	v := r.URL.Query()
	q := certQuery{CN: v.Get("cn"), Serial: v.Get("serial"), Profile: v.Get("profile"), Status: v.Get("status"), After: v.Get("after")}
	d := certsData{Q: q, ProfileNames: h.cfg.Admin.Profiles().Names(), Statuses: []string{store.StatusValid, store.StatusExpired, store.StatusRevoked}}
	bad := func(msg string) {
		h.render(w, http.StatusBadRequest, "certs", &page{Title: "Certificates", Nav: "certs", Session: s, Error: msg, Data: d})
	}
	for _, f := range []string{q.CN, q.Serial, q.Profile, q.Status, q.After} {
		if len(f) > maxField {
			bad(fmt.Sprintf("A search field is longer than %d characters.", maxField))
			return
		}
	}
	if q.Status != "" && !slices.Contains(d.Statuses, q.Status) {
		bad("Status must be valid, expired or revoked.")
		return
	}
	if q.After != "" && !isHex(q.After) {
		bad("The page link is damaged; start again from the first page.")
		return
	}
	now := h.cfg.Now()
	if q.Serial != "" {
		serial, ok := normalizeSerial(q.Serial)
		if !ok {
			d.Note = "A serial is hexadecimal (0-9, a-f, colons allowed); nothing matches."
			h.render(w, http.StatusOK, "certs", &page{Title: "Certificates", Nav: "certs", Session: s, Data: d})
			return
		}
		list, _, err := h.cfg.Admin.ListCertificates(admin.CertQuery{Serial: serial, CNPrefix: q.CN, Profile: q.Profile, Status: q.Status})
		if err != nil {
			h.internal(w, r, s, "look up the serial", err)
			return
		}
		for _, c := range list {
			d.Rows = append(d.Rows, certRow{c.Serial, c.CN, c.Profile, c.Status(now), c.NotAfter})
		}
		h.render(w, http.StatusOK, "certs", &page{Title: "Certificates", Nav: "certs", Session: s, Data: d})
		return
	}
	list, next, err := h.cfg.Admin.ListCertificates(admin.CertQuery{CNPrefix: q.CN, Profile: q.Profile, Status: q.Status, After: q.After, Limit: pageSize})
	if errors.Is(err, admin.ErrNotFound) {
		bad("The page link is damaged; start again from the first page.")
		return
	}
	if err != nil {
		h.internal(w, r, s, "search certificates", err)
		return
	}
	for _, c := range list {
		d.Rows = append(d.Rows, certRow{c.Serial, c.CN, c.Profile, c.Status(now), c.NotAfter})
	}
	link := func(after string) string {
		return pageLink("/admin/certs", map[string]string{"cn": q.CN, "profile": q.Profile, "status": q.Status, "after": after})
	}
	d.setLinks(link, next, q.After, len(list), "The search stopped after scanning many records; more may match on the next page.")
	h.render(w, http.StatusOK, "certs", &page{Title: "Certificates", Nav: "certs", Session: s, Data: d})
}

// certData is the certificate page's data.
type certData struct {
	Rec             *store.Cert
	Status          string
	Subject, Issuer string
	Fingerprint     string
	Reasons         []reasonOption
	AnchorNote      string
	// ACME is the ACME account whose order got the certificate (nil:
	// none did).
	ACME *acme.Account
}

type reasonOption struct {
	Code int
	Name string
}

// pathSerial validates the {serial} path value: hex only, else 404.
func pathSerial(r *http.Request) (string, bool) {
	raw := r.PathValue("serial")
	if raw == "" || len(raw) > 40 || !isHex(strings.ToLower(raw)) {
		return "", false
	}
	return normalizeSerial(raw)
}

func (h *handler) cert(w http.ResponseWriter, r *http.Request, s *store.Session) {
	raw := r.PathValue("serial")
	pemDownload := strings.HasSuffix(raw, ".pem")
	if pemDownload {
		r.SetPathValue("serial", strings.TrimSuffix(raw, ".pem"))
	}
	serial, ok := pathSerial(r)
	if !ok {
		h.fail(w, r, s, http.StatusNotFound, "No such certificate: a serial is hexadecimal digits.")
		return
	}
	c, err := h.cfg.Admin.GetCertificate(serial)
	if errors.Is(err, admin.ErrNotFound) {
		h.fail(w, r, s, server.HTTPStatus(err), fmt.Sprintf("No certificate has serial %s.", serial))
		return
	}
	if err != nil {
		h.internal(w, r, s, "read the certificate", err)
		return
	}
	if pemDownload {
		if len(c.DER) == 0 {
			h.fail(w, r, s, http.StatusNotFound, "The store holds no DER for this certificate.")
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", c.Serial+".pem"))
		_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
		return
	}
	d := certData{Rec: c, Status: c.Status(h.cfg.Now())}
	if d.ACME, err = h.cfg.Admin.CertificateACMEAccount(c.Serial); err != nil {
		h.internal(w, r, s, "read the certificate's ACME account", err)
		return
	}
	if x, err := x509.ParseCertificate(c.DER); err == nil {
		d.Subject, d.Issuer = x.Subject.String(), x.Issuer.String()
		sum := sha256.Sum256(c.DER)
		d.Fingerprint = hex.EncodeToString(sum[:])
	} else {
		d.Subject = "CN=" + c.CN
	}
	for _, code := range revocation.AllowedReasons {
		d.Reasons = append(d.Reasons, reasonOption{code, revocation.ReasonName(code)})
	}
	p := &page{Title: c.CN, Nav: "certs", Session: s, Data: &d}
	if c.Revocation != nil {
		crlNum, _ := strconv.ParseInt(r.URL.Query().Get("crl"), 10, 64)
		d.AnchorNote = h.anchorNote(c.Revocation, crlNum)
	}
	switch r.URL.Query().Get("done") {
	case "revoked":
		p.Flash = "Certificate revoked; the new CRL lists it."
	case "already":
		p.Flash = "This certificate was already revoked; the first reason and time are kept."
	}
	h.render(w, http.StatusOK, "cert", p)
}

// anchorNote says whether the CRL carrying a revocation has reached the
// trust anchor. crlNum is the CRL number Revoke returned (0: unknown; then
// the current CRL is used if it was made after the revocation, which may
// say "pending" a little longer than strictly true, never the reverse).
func (h *handler) anchorNote(rev *store.Revocation, crlNum int64) string {
	if crlNum <= 0 {
		cur := h.cfg.Admin.CRL()
		if cur == nil || cur.ThisUpdate.Before(rev.At.Truncate(time.Second)) {
			return "pending: no CRL lists it yet"
		}
		crlNum = cur.Number
	}
	st := h.anchorStatus()
	if st == nil {
		return fmt.Sprintf("CRL #%d lists it; trust-anchor sync is not configured", crlNum)
	}
	if st.CRLNumber >= crlNum {
		return fmt.Sprintf("CRL #%d (or newer) reached the trust anchor at %s", crlNum, st.CRLReachedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if st.CRLNumber == 0 {
		return fmt.Sprintf("pending: CRL #%d lists it; the trust anchor has no CRL yet", crlNum)
	}
	return fmt.Sprintf("pending: CRL #%d lists it; the trust anchor still has CRL #%d", crlNum, st.CRLNumber)
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request, s *store.Session) {
	serial, ok := pathSerial(r)
	if !ok {
		h.fail(w, r, s, http.StatusNotFound, "No such certificate: a serial is hexadecimal digits.")
		return
	}
	reason, err := revocation.ParseReason(r.PostForm.Get("reason"))
	if err != nil {
		h.fail(w, r, s, http.StatusBadRequest, "Not revoked: "+err.Error()+".")
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		h.fail(w, r, s, http.StatusBadRequest, "Not revoked: tick the confirmation box to revoke the certificate.")
		return
	}
	res, err := h.cfg.Admin.Revoke(ctxWithoutCancel(r), revocation.Request{Serial: serial, Reason: reason,
		Comment: r.PostForm.Get("comment"), By: s.Actor})
	switch {
	case errors.Is(err, revocation.ErrNotFound):
		h.fail(w, r, s, server.HTTPStatus(err), fmt.Sprintf("No certificate has serial %s; nothing was revoked.", serial))
		return
	case errors.Is(err, revocation.ErrUnknownReason), errors.Is(err, revocation.ErrBadRequest):
		h.fail(w, r, s, server.HTTPStatus(err), "Not revoked: "+err.Error()+".")
		return
	case err != nil:
		h.internal(w, r, s, "revoke the certificate", err)
		return
	}
	done := "revoked"
	if !res.Changed {
		done = "already"
	}
	http.Redirect(w, r, fmt.Sprintf("/admin/certs/%s?done=%s&crl=%d", serial, done, res.CRLNumber), http.StatusSeeOther)
}

// tokenForm is the new-token form, kept on errors.
type tokenForm struct{ CN, Profile, DNS, TTL string }

// createdToken is shown once, right after creation.
type createdToken struct {
	CN        string
	ExpiresAt time.Time
	Token     string // the secret, pasted when the command asks for it
	Command   string
}

// tokensData is the tokens page's data.
type tokensData struct {
	Form         tokenForm
	ProfileNames []string
	Tokens       []*store.Token
	Created      *createdToken
}

func (h *handler) tokensPage(w http.ResponseWriter, r *http.Request, s *store.Session, status int, p *page, d *tokensData) {
	toks, err := h.cfg.Admin.ListTokens()
	if err != nil {
		h.internal(w, r, s, "list tokens", err)
		return
	}
	d.Tokens = toks
	d.ProfileNames = h.cfg.Admin.Profiles().Names()
	if d.Form.Profile == "" {
		d.Form.Profile = h.cfg.Admin.Profiles().Default
	}
	p.Title, p.Nav, p.Session, p.Data = "Enrollment tokens", "tokens", s, d
	h.render(w, status, "tokens", p)
}

func (h *handler) tokens(w http.ResponseWriter, r *http.Request, s *store.Session) {
	p := &page{}
	switch r.URL.Query().Get("done") {
	case "revoked":
		p.Flash = "Token revoked."
	}
	h.tokensPage(w, r, s, http.StatusOK, p, &tokensData{})
}

func (h *handler) createToken(w http.ResponseWriter, r *http.Request, s *store.Session) {
	f := tokenForm{CN: strings.TrimSpace(r.PostForm.Get("cn")), Profile: r.PostForm.Get("profile"),
		DNS: r.PostForm.Get("dns"), TTL: strings.TrimSpace(r.PostForm.Get("ttl"))}
	d := &tokensData{Form: f}
	bad := func(msg string) {
		h.tokensPage(w, r, s, http.StatusBadRequest, &page{Error: "No token created: " + msg}, d)
	}
	if f.CN == "" {
		bad("a common name is required.")
		return
	}
	var ttl time.Duration
	if f.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(f.TTL); err != nil || ttl <= 0 {
			bad(`"valid for" is a duration such as 30m, 1h or 24h.`)
			return
		}
	}
	dns := strings.FieldsFunc(f.DNS, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' || r == '\r' })
	secret, tok, err := h.cfg.Admin.CreateToken(ctxWithoutCancel(r), issuance.TokenRequest{CN: f.CN, Profile: f.Profile, DNSNames: dns, TTL: ttl, By: s.Actor})
	switch {
	case errors.Is(err, issuance.ErrNameNotAllowed), errors.Is(err, issuance.ErrUnknownProfile), errors.Is(err, issuance.ErrBadTokenTTL):
		bad(err.Error() + ".")
		return
	case err != nil:
		h.internal(w, r, s, "create the token", err)
		return
	}
	d.Form = tokenForm{Profile: f.Profile}
	// The command reads the token from stdin: a token on the command line
	// is visible in ps and shell history.
	cmd := fmt.Sprintf("lanyard enroll --ca %s --fingerprint %s --cn %s", h.cfg.CAURL, h.cfg.Fingerprint, tok.CN)
	for _, n := range tok.DNSNames {
		cmd += " --dns-name " + n
	}
	d.Created = &createdToken{CN: tok.CN, ExpiresAt: tok.ExpiresAt, Token: secret,
		Command: cmd + " --token - --out /etc/lanyard/pki"}
	h.tokensPage(w, r, s, http.StatusOK, &page{}, d)
}

func (h *handler) revokeToken(w http.ResponseWriter, r *http.Request, s *store.Session) {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 || !isHex(id) {
		h.fail(w, r, s, http.StatusNotFound, "No such token.")
		return
	}
	err := h.cfg.Admin.RevokeToken(ctxWithoutCancel(r), id, s.Actor)
	switch {
	case errors.Is(err, store.ErrTokenUsed):
		h.fail(w, r, s, server.HTTPStatus(err), "This token was already used; revoke the certificate it paid for instead.")
		return
	case errors.Is(err, admin.ErrNotFound):
		h.fail(w, r, s, server.HTTPStatus(err), "No such token.")
		return
	case err != nil:
		h.internal(w, r, s, "revoke the token", err)
		return
	}
	http.Redirect(w, r, "/admin/tokens?done=revoked", http.StatusSeeOther)
}

// auditQuery is the audit filter form.
type auditQuery struct{ Action, Actor, Subject, Before string }

// auditData is the audit page's data.
type auditData struct {
	Q       auditQuery
	Actions []store.AuditAction
	Events  []*store.AuditEvent
	pageLinks
}

func (h *handler) audit(w http.ResponseWriter, r *http.Request, s *store.Session) {
	v := r.URL.Query()
	q := auditQuery{Action: v.Get("action"), Actor: v.Get("actor"), Subject: v.Get("subject"), Before: v.Get("before")}
	d := auditData{Q: q, Actions: store.AuditActions}
	for _, f := range []string{q.Action, q.Actor, q.Subject, q.Before} {
		if len(f) > maxField {
			h.render(w, http.StatusBadRequest, "audit", &page{Title: "Audit log", Nav: "audit", Session: s,
				Error: fmt.Sprintf("A filter field is longer than %d characters.", maxField), Data: d})
			return
		}
	}
	if q.Before != "" && !isHex(q.Before) {
		h.render(w, http.StatusBadRequest, "audit", &page{Title: "Audit log", Nav: "audit", Session: s,
			Error: "The page link is damaged; start again from the newest events.", Data: d})
		return
	}
	events, next, err := h.cfg.Admin.ListAudit(store.AuditQuery{Action: store.AuditAction(q.Action), Actor: q.Actor, Subject: q.Subject, Before: q.Before, Limit: pageSize})
	if err != nil {
		h.internal(w, r, s, "read the audit log", err)
		return
	}
	d.Events = events
	link := func(before string) string {
		return pageLink("/admin/audit", map[string]string{"action": q.Action, "actor": q.Actor, "subject": q.Subject, "before": before})
	}
	d.setLinks(link, next, q.Before, len(events), "The filter stopped after scanning many events; older ones may match on the next page.")
	h.render(w, http.StatusOK, "audit", &page{Title: "Audit log", Nav: "audit", Session: s, Data: d})
}

// pageLink is base with the non-empty params as its query (a search page's
// next and first links keep the filters).
func pageLink(base string, params map[string]string) string {
	u := url.Values{}
	for k, val := range params {
		if val != "" {
			u.Set(k, val)
		}
	}
	if len(u) == 0 {
		return base
	}
	return base + "?" + u.Encode()
}
