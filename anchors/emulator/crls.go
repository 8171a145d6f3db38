package emulator

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"time"
)

type crl struct {
	id, arn, name  string
	data           []byte
	list           *x509.RevocationList
	trustAnchorArn string
	enabled        bool
	tags           []tag
	created        time.Time
	updated        time.Time
}

// JSON views, as the SDK deserializes them.

type crlJSON struct {
	CreatedAt      string `json:"createdAt"`
	CrlArn         string `json:"crlArn"`
	CrlData        []byte `json:"crlData"`
	CrlID          string `json:"crlId"`
	Enabled        bool   `json:"enabled"`
	Name           string `json:"name"`
	TrustAnchorArn string `json:"trustAnchorArn"`
	UpdatedAt      string `json:"updatedAt"`
}

func (c *crl) view() crlJSON {
	return crlJSON{
		CreatedAt: ts(c.created), CrlArn: c.arn, CrlData: c.data, CrlID: c.id, Enabled: c.enabled,
		Name: c.name, TrustAnchorArn: c.trustAnchorArn, UpdatedAt: ts(c.updated),
	}
}

func parseCRL(data []byte) (*x509.RevocationList, error) {
	if len(data) == 0 || len(data) > MaxCRLBytes {
		return nil, validation("1 validation error detected: Value at 'crlData' failed to satisfy constraint: Member must have length between 1 and %d (got %d bytes)", MaxCRLBytes, len(data))
	}
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, validation("crlData must be a PEM-encoded CRL")
	}
	if b.Type != "X509 CRL" {
		return nil, validation("crlData holds a %s block; an X509 CRL block is required", b.Type)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, validation("crlData must hold exactly one CRL")
	}
	l, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, validation("crlData is not a valid CRL: %v", err)
	}
	return l, nil
}

func (e *Emulator) importCRL(body []byte) (int, any, error) {
	var in struct {
		Name           string `json:"name"`
		CrlData        []byte `json:"crlData"`
		TrustAnchorArn string `json:"trustAnchorArn"`
		Enabled        *bool  `json:"enabled"`
		Tags           []tag  `json:"tags"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	if err := checkName(in.Name); err != nil {
		return 0, nil, err
	}
	if in.TrustAnchorArn == "" {
		return 0, nil, validation("trustAnchorArn is required")
	}
	l, err := parseCRL(in.CrlData)
	if err != nil {
		return 0, nil, err
	}
	a := e.anchorByArn(in.TrustAnchorArn)
	if a == nil {
		return 0, nil, notFound("Trust anchor %s not found", in.TrustAnchorArn)
	}
	n := 0
	for _, c := range e.crls {
		if c.trustAnchorArn == a.arn {
			n++
		}
	}
	if n >= MaxCRLsPerAnchor {
		return 0, nil, validation("a trust anchor can have at most %d CRLs", MaxCRLsPerAnchor)
	}
	now := e.now()
	id := newUUID()
	c := &crl{
		id: id, arn: e.arn("crl", id), name: in.Name, data: in.CrlData, list: l, trustAnchorArn: a.arn,
		enabled: in.Enabled != nil && *in.Enabled, tags: in.Tags, created: now, updated: now,
	}
	e.crls = append(e.crls, c)
	return http.StatusCreated, map[string]any{"crl": c.view()}, nil
}

func (e *Emulator) updateCRL(c *crl, body []byte) (int, any, error) {
	var in struct {
		Name    *string `json:"name"`
		CrlData []byte  `json:"crlData"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Name != nil {
		if err := checkName(*in.Name); err != nil {
			return 0, nil, err
		}
	}
	var l *x509.RevocationList
	if in.CrlData != nil {
		var err error
		if l, err = parseCRL(in.CrlData); err != nil {
			return 0, nil, err
		}
	}
	if in.Name != nil {
		c.name = *in.Name
	}
	if l != nil {
		c.data, c.list = in.CrlData, l
	}
	c.updated = e.now()
	return 200, map[string]any{"crl": c.view()}, nil
}

func (e *Emulator) deleteCRL(c *crl) {
	for i, x := range e.crls {
		if x == c {
			e.crls = append(e.crls[:i], e.crls[i+1:]...)
			return
		}
	}
}

func (e *Emulator) crlByID(id string) (*crl, error) {
	if !uuidRE.MatchString(id) {
		return nil, validation("invalid CRL id %q", id)
	}
	for _, c := range e.crls {
		if c.id == id {
			return c, nil
		}
	}
	return nil, notFound("CRL %s not found", id)
}

func (e *Emulator) listCRLs(r *http.Request) (int, any, error) {
	from, to, next, err := page(r, len(e.crls))
	if err != nil {
		return 0, nil, err
	}
	items := []crlJSON{}
	for _, c := range e.crls[from:to] {
		items = append(items, c.view())
	}
	return 200, listOut("crls", items, next), nil
}
