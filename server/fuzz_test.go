package server_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lanyard/lanyard/internal/testca"
)

// FuzzConnectDecoding feeds arbitrary bodies, in every encoding the
// Connect handler accepts, to every procedure: the server must answer
// with a 4xx (or 200 for read-only calls), never a 5xx or a panic.
func FuzzConnectDecoding(f *testing.F) {
	c := testca.Start(f, testca.Options{})
	h := c.Server.Handler()
	procs := []string{
		"/lanyard.v1.CertificateService/Enroll", "/lanyard.v1.CertificateService/Renew",
		"/lanyard.v1.CertificateService/GetRenewalInfo", "/lanyard.v1.CertificateService/GetRoots",
		"/lanyard.v1.CertificateService/RevokeSelf", "/lanyard.v1.AdminService/CreateEnrollmentToken",
		"/lanyard.v1.AdminService/RevokeCertificate", "/lanyard.v1.AdminService/ListCertificates",
	}
	types := []string{"application/json", "application/proto", "application/grpc", "application/grpc-web+proto", "application/connect+json"}
	f.Add(uint8(0), uint8(0), []byte(`{"token":"lyt1_x","csr":"AAAA"}`))
	f.Add(uint8(0), uint8(1), []byte{0x0a, 0x03, 'a', 'b', 'c', 0x12, 0x01, 0x30})
	f.Add(uint8(1), uint8(2), []byte{0, 0, 0, 0, 5, 0x0a, 0x03, 'a', 'b', 'c'})
	f.Add(uint8(2), uint8(0), []byte(`{"serial":"zz"}`))
	f.Add(uint8(6), uint8(4), []byte(`{"serial":"00"}`))
	// issue 15: an empty message with flags 0x30 and one stray byte
	// answered INTERNAL "corrupt response: 1 extra bytes after end of stream".
	f.Add(uint8(6), uint8(3), []byte{0x30, 0, 0, 0, 0, 0x30})
	f.Fuzz(func(t *testing.T, p, ct uint8, body []byte) {
		req := httptest.NewRequest(http.MethodPost, procs[int(p)%len(procs)], bytes.NewReader(body))
		req.Header.Set("Content-Type", types[int(ct)%len(types)])
		if types[int(ct)%len(types)] == "application/grpc" || types[int(ct)%len(types)] == "application/grpc-web+proto" {
			req.ProtoMajor, req.ProtoMinor = 2, 0
			req.Header.Set("Te", "trailers")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", req.URL.Path, req.Header.Get("Content-Type"), rec.Code, rec.Body.String())
		}
		// A stranger's bytes are the stranger's fault, broken framing
		// included: never INTERNAL or UNKNOWN (a server fault), in the
		// headers or the trailers.
		for _, h := range []http.Header{rec.Header(), rec.Result().Trailer} {
			if s := h.Get("Grpc-Status"); s == "13" || s == "2" {
				t.Fatalf("%s %s: grpc status %s: %s", req.URL.Path, req.Header.Get("Content-Type"), s, h.Get("Grpc-Message"))
			}
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/connect+") && bytes.Contains(rec.Body.Bytes(), []byte(`"code":"internal"`)) {
			t.Fatalf("%s: connect internal error: %s", req.URL.Path, rec.Body.String())
		}
	})
}
