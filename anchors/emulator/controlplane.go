package emulator

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lanyard/lanyard/anchors/trust"
	"github.com/lanyard/lanyard/revocation"
)

// AWS limits the emulator enforces.
const (
	MaxCertificatesPerAnchor = 2
	MaxCRLsPerAnchor         = 2
	MaxCRLBytes              = revocation.RolesAnywhereCRLLimit
	MinDurationSeconds       = 900
	MaxDurationSeconds       = 43200
	DefaultDurationSeconds   = 3600
	maxRoleArns              = 250
	maxManagedPolicyArns     = 50
	maxPageSize              = 50
)

var (
	nameRE    = regexp.MustCompile(`^[ a-zA-Z0-9-_]{1,255}$`)
	roleArnRE = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$`)
	uuidRE    = regexp.MustCompile(`^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$`)
)

type notificationSetting struct {
	Channel      string `json:"channel"`
	ConfiguredBy string `json:"configuredBy,omitempty"`
	Enabled      bool   `json:"enabled"`
	Event        string `json:"event"`
	Threshold    int    `json:"threshold"`
}

type tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type sourceData struct {
	X509CertificateData *string `json:"x509CertificateData,omitempty"`
	AcmPcaArn           *string `json:"acmPcaArn,omitempty"`
}

type source struct {
	SourceType string     `json:"sourceType"`
	SourceData sourceData `json:"sourceData"`
}

type trustAnchor struct {
	id, arn, name string
	src           source
	certs         []*x509.Certificate
	enabled       bool
	crlDp         bool
	notifications []notificationSetting
	tags          []tag
	created       time.Time
	updated       time.Time
}

type trustAnchorJSON struct {
	CreatedAt              string                `json:"createdAt"`
	CrlDpRevocationEnabled bool                  `json:"crlDpRevocationEnabled"`
	Enabled                bool                  `json:"enabled"`
	Name                   string                `json:"name"`
	NotificationSettings   []notificationSetting `json:"notificationSettings"`
	Source                 source                `json:"source"`
	TrustAnchorArn         string                `json:"trustAnchorArn"`
	TrustAnchorID          string                `json:"trustAnchorId"`
	UpdatedAt              string                `json:"updatedAt"`
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (a *trustAnchor) view() trustAnchorJSON {
	return trustAnchorJSON{
		CreatedAt: ts(a.created), CrlDpRevocationEnabled: a.crlDp, Enabled: a.enabled, Name: a.name,
		NotificationSettings: append([]notificationSetting{}, a.notifications...), Source: a.src,
		TrustAnchorArn: a.arn, TrustAnchorID: a.id, UpdatedAt: ts(a.updated),
	}
}

// mappingsJSON is the API's view of a profile's attribute mappings.
// cloneMappings deep-copies ms.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (e *Emulator) arn(kind, id string) string {
	return "arn:aws:rolesanywhere:" + e.region + ":" + e.account + ":" + kind + "/" + id
}

// route dispatches a verified control-plane request. It returns the status
// and the JSON body of the answer.
func (e *Emulator) route(r *http.Request, body []byte) (int, any, error) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	m := r.Method
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case m == "POST" && len(segs) == 1 && segs[0] == "trustanchors":
		return e.createTrustAnchor(body)
	case m == "GET" && len(segs) == 1 && segs[0] == "trustanchors":
		return e.listTrustAnchors(r)
	case len(segs) >= 2 && segs[0] == "trustanchor":
		a, err := e.anchorByID(segs[1])
		if err != nil {
			return 0, nil, err
		}
		switch {
		case len(segs) == 2 && m == "GET":
			return 200, map[string]any{"trustAnchor": a.view()}, nil
		case len(segs) == 2 && m == "PATCH":
			return e.updateTrustAnchor(a, body)
		case len(segs) == 2 && m == "DELETE":
			e.deleteTrustAnchor(a)
			return 200, map[string]any{"trustAnchor": a.view()}, nil
		case len(segs) == 3 && m == "POST" && (segs[2] == "enable" || segs[2] == "disable"):
			a.enabled = segs[2] == "enable"
			a.updated = e.now()
			return 200, map[string]any{"trustAnchor": a.view()}, nil
		}
	case m == "POST" && len(segs) == 1 && segs[0] == "profiles":
		return e.createProfile(body)
	case m == "GET" && len(segs) == 1 && segs[0] == "profiles":
		return e.listProfiles(r)
	case len(segs) >= 2 && segs[0] == "profile":
		p, err := e.profileByID(segs[1])
		if err != nil {
			return 0, nil, err
		}
		switch {
		case len(segs) == 2 && m == "GET":
			return 200, map[string]any{"profile": p.view()}, nil
		case len(segs) == 2 && m == "PATCH":
			return e.updateProfile(p, body)
		case len(segs) == 2 && m == "DELETE":
			e.deleteProfile(p)
			return 200, map[string]any{"profile": p.view()}, nil
		case len(segs) == 3 && m == "POST" && (segs[2] == "enable" || segs[2] == "disable"):
			p.enabled = segs[2] == "enable"
			p.updated = e.now()
			return 200, map[string]any{"profile": p.view()}, nil
		}
	case len(segs) == 3 && segs[0] == "profiles" && segs[2] == "mappings":
		p, err := e.profileByID(segs[1])
		if err != nil {
			return 0, nil, err
		}
		switch m {
		case "PUT":
			return e.putAttributeMapping(p, body)
		case "DELETE":
			return e.deleteAttributeMapping(p, r)
		}
	case m == "PATCH" && len(segs) == 1 && segs[0] == "put-notifications-settings":
		return e.putNotificationSettings(body)
	case m == "PATCH" && len(segs) == 1 && segs[0] == "reset-notifications-settings":
		return e.resetNotificationSettings(body)
	case m == "POST" && len(segs) == 1 && segs[0] == "TagResource":
		return e.tagResource(body)
	case m == "POST" && len(segs) == 1 && segs[0] == "UntagResource":
		return e.untagResource(body)
	case m == "GET" && len(segs) == 1 && segs[0] == "ListTagsForResource":
		return e.listTagsForResource(r)
	case m == "GET" && len(segs) == 1 && segs[0] == "subjects":
		return e.listSubjects(r)
	case m == "GET" && len(segs) == 2 && segs[0] == "subject":
		return e.getSubject(segs[1])
	case m == "POST" && len(segs) == 1 && segs[0] == "crls":
		return e.importCRL(body)
	case m == "GET" && len(segs) == 1 && segs[0] == "crls":
		return e.listCRLs(r)
	case len(segs) >= 2 && segs[0] == "crl":
		c, err := e.crlByID(segs[1])
		if err != nil {
			return 0, nil, err
		}
		switch {
		case len(segs) == 2 && m == "GET":
			return 200, map[string]any{"crl": c.view()}, nil
		case len(segs) == 2 && m == "PATCH":
			return e.updateCRL(c, body)
		case len(segs) == 2 && m == "DELETE":
			e.deleteCRL(c)
			return 200, map[string]any{"crl": c.view()}, nil
		case len(segs) == 3 && m == "POST" && (segs[2] == "enable" || segs[2] == "disable"):
			c.enabled = segs[2] == "enable"
			c.updated = e.now()
			return 200, map[string]any{"crl": c.view()}, nil
		}
	}
	return 0, nil, newErr(http.StatusNotFound, ErrUnknownOperation, fmt.Sprintf("the emulator does not implement %s %s", m, r.URL.Path))
}

func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return validation("request body is not valid JSON: %v", err)
	}
	return nil
}

func checkName(n string) error {
	if !nameRE.MatchString(n) {
		return validation("1 validation error detected: Value '%s' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[ a-zA-Z0-9-_]*$ and length 1-255", n)
	}
	return nil
}

// parseBundle validates a CERTIFICATE_BUNDLE source: PEM certificates only,
// 1 to MaxCertificatesPerAnchor of them, each a CA (CA:true, keyCertSign)
// signed with SHA-256 or stronger.
func parseBundle(src source) ([]*x509.Certificate, error) {
	switch src.SourceType {
	case "CERTIFICATE_BUNDLE":
	case "AWS_ACM_PCA", "SELF_SIGNED_REPOSITORY":
		return nil, validation("source type %s is not supported by the emulator", src.SourceType)
	default:
		return nil, validation("invalid source type %q", src.SourceType)
	}
	if src.SourceData.X509CertificateData == nil || src.SourceData.AcmPcaArn != nil {
		return nil, validation("a CERTIFICATE_BUNDLE source needs x509CertificateData")
	}
	rest := []byte(*src.SourceData.X509CertificateData)
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, validation("x509CertificateData holds a %s block; only CERTIFICATE is allowed", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, validation("x509CertificateData holds an invalid certificate: %v", err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, validation("x509CertificateData must be PEM-encoded certificates")
	}
	if len(certs) == 0 {
		return nil, validation("x509CertificateData holds no certificate")
	}
	if len(certs) > MaxCertificatesPerAnchor {
		return nil, validation("a trust anchor can hold at most %d certificates, got %d", MaxCertificatesPerAnchor, len(certs))
	}
	for _, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, validation("certificate %q is not a CA certificate (basic constraints CA:true is required)", c.Subject)
		}
		if c.KeyUsage&x509.KeyUsageCertSign == 0 {
			return nil, validation("certificate %q lacks the Certificate Sign key usage", c.Subject)
		}
		if !trust.StrongSignature(c.SignatureAlgorithm) {
			return nil, validation("certificate %q is signed with %s; SHA-256 or stronger is required", c.Subject, c.SignatureAlgorithm)
		}
	}
	return certs, nil
}

var defaultNotifications = []notificationSetting{
	{Channel: "ALL", ConfiguredBy: "rolesanywhere.amazonaws.com", Enabled: true, Event: "CA_CERTIFICATE_EXPIRY", Threshold: 45},
	{Channel: "ALL", ConfiguredBy: "rolesanywhere.amazonaws.com", Enabled: true, Event: "END_ENTITY_CERTIFICATE_EXPIRY", Threshold: 45},
}

func mergeNotifications(in []notificationSetting) ([]notificationSetting, error) {
	out := append([]notificationSetting{}, defaultNotifications...)
	if len(in) > 50 {
		return nil, validation("at most 50 notification settings")
	}
	for _, n := range in {
		if n.Event != "CA_CERTIFICATE_EXPIRY" && n.Event != "END_ENTITY_CERTIFICATE_EXPIRY" {
			return nil, validation("invalid notification event %q", n.Event)
		}
		if n.Channel == "" {
			n.Channel = "ALL"
		}
		if n.Threshold != 0 && (n.Threshold < 1 || n.Threshold > 360) {
			return nil, validation("notification threshold must be 1-360 days")
		}
		for i := range out {
			if out[i].Event == n.Event && out[i].Channel == n.Channel {
				if n.Threshold == 0 {
					n.Threshold = out[i].Threshold
				}
				n.ConfiguredBy = ""
				out[i] = n
			}
		}
	}
	return out, nil
}

func (e *Emulator) createTrustAnchor(body []byte) (int, any, error) {
	var in struct {
		Name                   string                `json:"name"`
		Source                 *source               `json:"source"`
		Enabled                *bool                 `json:"enabled"`
		CrlDpRevocationEnabled *bool                 `json:"crlDpRevocationEnabled"`
		NotificationSettings   []notificationSetting `json:"notificationSettings"`
		Tags                   []tag                 `json:"tags"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	if err := checkName(in.Name); err != nil {
		return 0, nil, err
	}
	if in.Source == nil {
		return 0, nil, validation("source is required")
	}
	certs, err := parseBundle(*in.Source)
	if err != nil {
		return 0, nil, err
	}
	ns, err := mergeNotifications(in.NotificationSettings)
	if err != nil {
		return 0, nil, err
	}
	if len(e.anchors) >= 50 {
		return 0, nil, validation("trust anchor quota (50) exceeded")
	}
	now := e.now()
	id := newUUID()
	a := &trustAnchor{
		id: id, arn: e.arn("trust-anchor", id), name: in.Name, src: *in.Source, certs: certs,
		enabled: in.Enabled != nil && *in.Enabled, crlDp: in.CrlDpRevocationEnabled != nil && *in.CrlDpRevocationEnabled,
		notifications: ns, tags: in.Tags, created: now, updated: now,
	}
	e.anchors = append(e.anchors, a)
	return http.StatusCreated, map[string]any{"trustAnchor": a.view()}, nil
}

func (e *Emulator) updateTrustAnchor(a *trustAnchor, body []byte) (int, any, error) {
	var in struct {
		Name                   *string `json:"name"`
		Source                 *source `json:"source"`
		CrlDpRevocationEnabled *bool   `json:"crlDpRevocationEnabled"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Name != nil {
		if err := checkName(*in.Name); err != nil {
			return 0, nil, err
		}
	}
	var certs []*x509.Certificate
	if in.Source != nil {
		var err error
		if certs, err = parseBundle(*in.Source); err != nil {
			return 0, nil, err
		}
	}
	if in.Name != nil {
		a.name = *in.Name
	}
	if in.Source != nil {
		a.src, a.certs = *in.Source, certs
	}
	if in.CrlDpRevocationEnabled != nil {
		a.crlDp = *in.CrlDpRevocationEnabled
	}
	a.updated = e.now()
	return 200, map[string]any{"trustAnchor": a.view()}, nil
}

func (e *Emulator) deleteTrustAnchor(a *trustAnchor) {
	for i, x := range e.anchors {
		if x == a {
			e.anchors = append(e.anchors[:i], e.anchors[i+1:]...)
			break
		}
	}
	kept := e.crls[:0]
	for _, c := range e.crls {
		if c.trustAnchorArn != a.arn {
			kept = append(kept, c)
		}
	}
	e.crls = kept
}

func (e *Emulator) anchorByID(id string) (*trustAnchor, error) {
	if !uuidRE.MatchString(id) {
		return nil, validation("invalid trust anchor id %q", id)
	}
	for _, a := range e.anchors {
		if a.id == id {
			return a, nil
		}
	}
	return nil, notFound("Trust anchor %s not found", id)
}

func (e *Emulator) anchorByArn(arn string) *trustAnchor {
	for _, a := range e.anchors {
		if a.arn == arn {
			return a
		}
	}
	return nil
}

// page applies nextToken/pageSize to n items and returns [from, to) and the
// next token ("" on the last page).
func page(r *http.Request, n int) (int, int, string, error) {
	q := r.URL.Query()
	size := maxPageSize
	if s := q.Get("pageSize"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxPageSize {
			return 0, 0, "", validation("pageSize must be 1-%d", maxPageSize)
		}
		size = v
	}
	from := 0
	if t := q.Get("nextToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		v, err2 := strconv.Atoi(string(b))
		if err != nil || err2 != nil || v < 0 || v > n {
			return 0, 0, "", validation("invalid nextToken")
		}
		from = v
	}
	to := min(from+size, n)
	next := ""
	if to < n {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(to)))
	}
	return from, to, next, nil
}

func listOut(key string, items any, next string) map[string]any {
	out := map[string]any{key: items}
	if next != "" {
		out["nextToken"] = next
	}
	return out
}

func (e *Emulator) listTrustAnchors(r *http.Request) (int, any, error) {
	from, to, next, err := page(r, len(e.anchors))
	if err != nil {
		return 0, nil, err
	}
	items := []trustAnchorJSON{}
	for _, a := range e.anchors[from:to] {
		items = append(items, a.view())
	}
	return 200, listOut("trustAnchors", items, next), nil
}

// parseCRL validates CRL data: 1 to MaxCRLBytes bytes, one PEM "X509 CRL"
// block (DER is refused: AWS documents PEM only), a parseable CRL.
