package app

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/lanyard/lanyard/admincred"
	"github.com/lanyard/lanyard/config"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/tidy"
)

// TidyPath runs a tidy in the server for the admin client certificate
// (`lanyard tidy` while the server holds the bbolt store's lock);
// ?dry_run=1 only counts. The answer is the tidy.Report as JSON.
const TidyPath = "/_tidy"

// TidyRetention maps lanyard.yaml's tidy section to tidy.Retention.
func TidyRetention(c config.Tidy) tidy.Retention {
	return tidy.Retention{Certs: c.Certs, Tokens: c.Tokens, Sessions: c.Sessions, Audit: c.Audit}
}

func tidyHandler(svc *tidy.Service, admin *admincred.Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// admin.Check: the verified client certificate is a live admin
		// credential (recorded, not revoked), read on every request.
		if err := admin.Check(server.ClientCert(r.Context())); err != nil {
			http.Error(w, "this needs the admin client certificate: "+err.Error(), http.StatusForbidden)
			return
		}
		rep, err := svc.Run(r.Context(), "admin:cli", r.URL.Query().Get("dry_run") == "1")
		if err != nil {
			log.Error("tidy", "err", err)
			http.Error(w, "tidy failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}
