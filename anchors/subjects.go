package anchors

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/store"
)

// Inventory is lanyard's record of what it issued, as Subjects reads it.
type Inventory interface {
	// Certificate returns lanyard's record of the serial (nil, nil when
	// lanyard never issued it).
	Certificate(serial *big.Int) (*InventoryCert, error)
	// Valid returns the host certificates valid at now that are the
	// newest of their lineage (not renewed since).
	Valid(now time.Time) ([]InventoryCert, error)
}

// InventoryCert is one certificate lanyard issued.
type InventoryCert struct {
	Serial   *big.Int
	CN       string
	NotAfter time.Time
	// RevokedAt is when it was revoked (zero: not revoked).
	RevokedAt time.Time
}

// Finding kinds of a subjects report.
const (
	// FindingForeign: a certificate authenticated that lanyard never
	// issued (another CA in the anchor, or a forged record).
	FindingForeign = "not issued by lanyard"
	// FindingRevokedSeen: a revoked certificate was presented after the
	// CRL listing it reached the anchor (a host still using it, or a
	// stolen key being tried).
	FindingRevokedSeen = "revoked, seen after its revocation reached the anchor"
	// FindingNeverUsed: a valid enrollment that never authenticated.
	FindingNeverUsed = "valid, never used with Roles Anywhere"
)

// SeenCert is one certificate Roles Anywhere saw.
type SeenCert struct {
	Subject string
	Serial  *big.Int
	Issuer  string
	SeenAt  time.Time
	// Failed: that authentication was refused.
	Failed bool
}

// Finding is one flagged certificate.
type Finding struct {
	Kind    string
	Subject string
	Serial  *big.Int
	// SeenAt is when Roles Anywhere last saw it (zero for never used).
	SeenAt time.Time
	Detail string
}

// SubjectsReport is Roles Anywhere's subjects reconciled with the
// inventory.
type SubjectsReport struct {
	Seen     []SeenCert
	Findings []Finding
}

// Subjects reads every subject (ListSubjects, then GetSubject for its
// certificates) and flags certificates lanyard never issued, revoked
// certificates seen after the CRL that lists them reached the anchor
// (its updatedAt in ListCrls), and valid enrollments never seen.
func (s *Syncer) Subjects(ctx context.Context, inv Inventory) (*SubjectsReport, error) {
	rep := &SubjectsReport{}
	var token *string
	for {
		out, err := s.api.ListSubjects(ctx, &rolesanywhere.ListSubjectsInput{NextToken: token})
		if err != nil {
			return nil, fmt.Errorf("anchors: list subjects: %w", err)
		}
		for _, sum := range out.Subjects {
			d, err := s.api.GetSubject(ctx, &rolesanywhere.GetSubjectInput{SubjectId: sum.SubjectId})
			if err != nil {
				return nil, fmt.Errorf("anchors: get subject %s: %w", aws.ToString(sum.SubjectId), err)
			}
			for _, c := range d.Subject.Credentials {
				serial, ok := new(big.Int).SetString(aws.ToString(c.SerialNumber), 10)
				if !ok {
					// Fall back to the certificate itself.
					if blk, _ := pem.Decode([]byte(aws.ToString(c.X509CertificateData))); blk != nil {
						if cert, err := x509.ParseCertificate(blk.Bytes); err == nil {
							serial = cert.SerialNumber
						}
					}
				}
				if serial == nil {
					continue
				}
				rep.Seen = append(rep.Seen, SeenCert{Subject: aws.ToString(d.Subject.X509Subject), Serial: serial,
					Issuer: aws.ToString(c.Issuer), SeenAt: aws.ToTime(c.SeenAt), Failed: aws.ToBool(c.Failed)})
			}
		}
		if out.NextToken == nil {
			break
		}
		token = out.NextToken
	}
	// When did the anchor's CRL (newest) last change? A revocation older
	// than that is known to the anchor.
	crl, err := s.RemoteCRL(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, sc := range rep.Seen {
		seen[sc.Serial.String()] = true
		rec, err := inv.Certificate(sc.Serial)
		if err != nil {
			return nil, fmt.Errorf("anchors: look up serial %s: %w", sc.Serial, err)
		}
		switch {
		case rec == nil:
			rep.Findings = append(rep.Findings, Finding{Kind: FindingForeign, Subject: sc.Subject, Serial: sc.Serial, SeenAt: sc.SeenAt,
				Detail: "issuer " + sc.Issuer + outcome(sc.Failed)})
		case !rec.RevokedAt.IsZero() && crl != nil && crl.Lists(sc.Serial) && !sc.SeenAt.Before(crl.UpdatedAt):
			rep.Findings = append(rep.Findings, Finding{Kind: FindingRevokedSeen, Subject: sc.Subject, Serial: sc.Serial, SeenAt: sc.SeenAt,
				Detail: fmt.Sprintf("revoked %s, CRL %d at the anchor since %s%s", rec.RevokedAt.UTC().Format(time.RFC3339),
					crl.Number, crl.UpdatedAt.UTC().Format(time.RFC3339), outcome(sc.Failed))})
		}
	}
	valid, err := inv.Valid(s.now())
	if err != nil {
		return nil, fmt.Errorf("anchors: list valid certificates: %w", err)
	}
	for _, v := range valid {
		if !seen[v.Serial.String()] {
			rep.Findings = append(rep.Findings, Finding{Kind: FindingNeverUsed, Subject: "CN=" + v.CN, Serial: v.Serial,
				Detail: "expires " + v.NotAfter.UTC().Format(time.RFC3339)})
		}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool { return rep.Findings[i].Kind < rep.Findings[j].Kind })
	return rep, nil
}

func outcome(failed bool) string {
	if failed {
		return "; that authentication was refused"
	}
	return "; that authentication SUCCEEDED"
}

// String prints the report: what was seen, then the findings.
func (r *SubjectsReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "certificates Roles Anywhere saw: %d\n", len(r.Seen))
	for _, s := range r.Seen {
		res := "ok"
		if s.Failed {
			res = "refused"
		}
		fmt.Fprintf(&b, "  %s serial %s, last seen %s (%s)\n", s.Subject, s.Serial.Text(16), s.SeenAt.UTC().Format(time.RFC3339), res)
	}
	if len(r.Findings) == 0 {
		fmt.Fprintf(&b, "findings: none\n")
		return b.String()
	}
	fmt.Fprintf(&b, "findings: %d\n", len(r.Findings))
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  ! %s: %s serial %s: %s\n", f.Kind, f.Subject, f.Serial.Text(16), f.Detail)
	}
	return b.String()
}

// CertStore is the part of lanyard's store StoreInventory reads;
// store.Store implements it.
type CertStore interface {
	GetCert(serial string) (*store.Cert, error)
	ListCerts(q store.CertQuery) ([]*store.Cert, string, error)
}

// StoreInventory is the Inventory of lanyard's store.
type StoreInventory struct{ DB CertStore }

// Certificate implements Inventory.
func (i StoreInventory) Certificate(serial *big.Int) (*InventoryCert, error) {
	c, err := i.DB.GetCert(lanyardv1.FormatSerial(serial))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return inventoryCert(c), nil
}

// Valid implements Inventory.
func (i StoreInventory) Valid(now time.Time) ([]InventoryCert, error) {
	var out []InventoryCert
	after := ""
	for {
		page, next, err := i.DB.ListCerts(store.CertQuery{Status: store.StatusValid, Now: now, After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, c := range page {
			// "_server" and the like are lanyard's own TLS
			// certificates, never meant for Roles Anywhere.
			if c.NextSerial == "" && !strings.HasPrefix(c.Profile, "_") {
				out = append(out, *inventoryCert(c))
			}
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

func inventoryCert(c *store.Cert) *InventoryCert {
	ic := &InventoryCert{CN: c.CN, NotAfter: c.NotAfter}
	ic.Serial, _ = new(big.Int).SetString(c.Serial, 16)
	if c.Revocation != nil {
		ic.RevokedAt = c.Revocation.At
	}
	return ic
}

// MaxStatusFindings caps the findings kept in Status (the dashboard's
// panel; `lanyard anchors subjects` prints them all).
const MaxStatusFindings = 50

// SubjectsSummary is the last subjects report, as Status keeps it.
type SubjectsSummary struct {
	// At is when it was made; Seen how many certificates Roles Anywhere
	// had seen; Findings the flagged ones (at most MaxStatusFindings).
	At       time.Time `json:"at"`
	Seen     int       `json:"seen"`
	Findings []Finding `json:"findings,omitempty"`
	// Total is the number of findings before the cap.
	Total int `json:"total"`
	// Err is why the last report failed ("" if it did not).
	Err string `json:"err,omitempty"`
}

// SetInventory makes Run reconcile the subjects after every sync (nil:
// not).
func (s *Syncer) SetInventory(inv Inventory) {
	s.mu.Lock()
	s.inv = inv
	s.mu.Unlock()
}

// RefreshSubjects runs the subjects report against the inventory given to
// SetInventory and records its summary in the status.
func (s *Syncer) RefreshSubjects(ctx context.Context) {
	s.mu.Lock()
	inv := s.inv
	s.mu.Unlock()
	if inv == nil {
		return
	}
	rep, err := s.Subjects(ctx, inv)
	sum := &SubjectsSummary{At: s.now().UTC()}
	if err != nil {
		sum.Err = err.Error()
		s.log.Warn("anchors: subjects report failed", "err", err)
	} else {
		sum.Seen, sum.Total = len(rep.Seen), len(rep.Findings)
		sum.Findings = rep.Findings[:min(len(rep.Findings), MaxStatusFindings)]
		for _, f := range rep.Findings {
			if f.Kind != FindingNeverUsed {
				s.log.Warn("anchors: subjects finding", "kind", f.Kind, "subject", f.Subject, "serial", f.Serial.Text(16), "detail", f.Detail)
			}
		}
	}
	s.update(ctx, func(st *Status) { st.Subjects = sum })
}
