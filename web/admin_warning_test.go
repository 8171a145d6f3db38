package web

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lanyard/lanyard/ca"
)

// TestDashboardWarnsOfAdminCertificateExpiry: the dashboard shows a
// doctor-style warning once the admin certificate ends within a week, and
// none before.
func TestDashboardWarnsOfAdminCertificateExpiry(t *testing.T) {
	e := newEnv(t)
	cookie, _ := e.login(t)
	dashboard := func() string {
		w := e.do(t, http.MethodGet, "/admin/", cookie, nil)
		if w.Code != http.StatusOK {
			t.Fatalf("dashboard: %d", w.Code)
		}
		return w.Body.String()
	}
	if body := dashboard(); strings.Contains(body, "WARN") {
		t.Fatalf("a fresh admin certificate is warned about: %s", body)
	}
	notAfter := e.ca.AdminCert.Leaf.NotAfter
	e.clock.Set(notAfter.Add(-6 * 24 * time.Hour))
	cookie, _ = e.login(t) // the first session has expired by now
	body := dashboard()
	if !strings.Contains(body, "WARN the admin certificate") || !strings.Contains(body, "expires in 6d0h") {
		t.Fatalf("no admin expiry warning six days before the end: %s", body)
	}
	if ca.AdminValidity != 90*24*time.Hour {
		t.Fatalf("admin validity %v, want 90 days", ca.AdminValidity)
	}
}
