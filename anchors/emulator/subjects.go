package emulator

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"sort"
	"time"
)

// A subject is what Roles Anywhere remembers of one certificate subject:
// each certificate (serial, issuer) that tried to authenticate with it,
// when, and whether it failed. The emulator records a certificate once its
// CreateSession signature has verified (the caller holds the key), whether
// the session is then granted or refused; requests that fail earlier name
// no proven certificate and are not recorded. Which failures AWS records
// is not documented; this is the emulator's choice.
type subjectRec struct {
	id, subject      string
	created, updated time.Time
	lastSeen         time.Time
	creds            []*subjectCred
}

type subjectCred struct {
	seenAt time.Time
	cert   *x509.Certificate
	failed bool
}

type subjectSummaryJSON struct {
	CreatedAt   string `json:"createdAt"`
	Enabled     bool   `json:"enabled"`
	LastSeenAt  string `json:"lastSeenAt"`
	SubjectArn  string `json:"subjectArn"`
	SubjectID   string `json:"subjectId"`
	UpdatedAt   string `json:"updatedAt"`
	X509Subject string `json:"x509Subject"`
}

type credentialSummaryJSON struct {
	Enabled             bool   `json:"enabled"`
	Failed              bool   `json:"failed"`
	Issuer              string `json:"issuer"`
	SeenAt              string `json:"seenAt"`
	SerialNumber        string `json:"serialNumber"`
	X509CertificateData string `json:"x509CertificateData"`
}

type subjectDetailJSON struct {
	subjectSummaryJSON
	Credentials        []credentialSummaryJSON `json:"credentials"`
	InstanceProperties []any                   `json:"instanceProperties"`
}

// recordSubject notes that leaf authenticated (or tried to) at now. The
// caller holds e.mu.
func (e *Emulator) recordSubject(leaf *x509.Certificate, now time.Time, failed bool) *subjectRec {
	key := leaf.Subject.String()
	s, ok := e.subjects[key]
	if !ok {
		s = &subjectRec{id: newUUID(), subject: key, created: now}
		e.subjects[key] = s
		e.subjectOrder = append(e.subjectOrder, s)
	}
	s.lastSeen, s.updated = now, now
	for _, c := range s.creds {
		if bytes.Equal(c.cert.Raw, leaf.Raw) {
			c.seenAt, c.failed = now, failed
			return s
		}
	}
	s.creds = append(s.creds, &subjectCred{seenAt: now, cert: leaf, failed: failed})
	return s
}

func (e *Emulator) subjectSummary(s *subjectRec) subjectSummaryJSON {
	return subjectSummaryJSON{
		CreatedAt: ts(s.created), Enabled: true, LastSeenAt: ts(s.lastSeen), SubjectArn: e.arn("subject", s.id),
		SubjectID: s.id, UpdatedAt: ts(s.updated), X509Subject: s.subject,
	}
}

// listSubjects is GET /subjects.
func (e *Emulator) listSubjects(r *http.Request) (int, any, error) {
	from, to, next, err := page(r, len(e.subjectOrder))
	if err != nil {
		return 0, nil, err
	}
	items := []subjectSummaryJSON{}
	for _, s := range e.subjectOrder[from:to] {
		items = append(items, e.subjectSummary(s))
	}
	return 200, listOut("subjects", items, next), nil
}

// getSubject is GET /subject/{id}: the summary and every certificate seen,
// newest first. serialNumber is the decimal serial (as in the
// CreateSession Credential); the certificate is PEM.
func (e *Emulator) getSubject(id string) (int, any, error) {
	if !uuidRE.MatchString(id) {
		return 0, nil, validation("invalid subject id %q", id)
	}
	for _, s := range e.subjectOrder {
		if s.id != id {
			continue
		}
		d := subjectDetailJSON{subjectSummaryJSON: e.subjectSummary(s), Credentials: []credentialSummaryJSON{}, InstanceProperties: []any{}}
		creds := append([]*subjectCred(nil), s.creds...)
		sort.SliceStable(creds, func(i, j int) bool { return creds[i].seenAt.After(creds[j].seenAt) })
		for _, c := range creds {
			d.Credentials = append(d.Credentials, credentialSummaryJSON{
				Enabled: true, Failed: c.failed, Issuer: c.cert.Issuer.String(), SeenAt: ts(c.seenAt),
				SerialNumber:        c.cert.SerialNumber.String(),
				X509CertificateData: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})),
			})
		}
		return 200, map[string]any{"subject": d}, nil
	}
	return 0, nil, notFound("Subject %s not found", id)
}
