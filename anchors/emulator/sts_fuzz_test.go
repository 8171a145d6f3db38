package emulator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// stsAnswer is what an STS Query-protocol answer holds, success or error.
type stsAnswer struct {
	XMLName xml.Name
	Xmlns   string `xml:"xmlns,attr"`
	Result  struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	} `xml:"GetCallerIdentityResult"`
	Error struct {
		Type, Code, Message string
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
	MetaReqID string `xml:"ResponseMetadata>RequestId"`
}

var stsRegionRE = regexp.MustCompile(`^[a-z0-9-]{1,20}$`)

// FuzzSTSQuery sends random Query-protocol requests to the emulator's STS
// endpoint: any body and content type, signed with SigV4 by the SDK's
// signer for a region of the fuzzer's, with the session's secret or a
// wrong one, its session token or another, the body changed after
// signing or not. A model of the documented rules (form body, then
// GetCallerIdentity 2011-06-15, then the signature, then the token) says
// what the answer must be, and the answer must be exactly that: 200 with
// the session's ARN, user ID and account, or STS's XML error shape with
// the model's code and status (Sender, the request ID of the response
// header); never a 5xx, never JSON.
func FuzzSTSQuery(f *testing.F) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	fx := newFixture(f, Options{Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s := fx.s
	good, wantArn := fx.sessionCredentials(f, now())

	const form = "application/x-www-form-urlencoded"
	gci := "Action=GetCallerIdentity&Version=2011-06-15"
	f.Add([]byte(gci), form+"; charset=utf-8", "us-east-1", "", uint8(0))
	f.Add([]byte(gci), form, "eu-west-1", "", uint8(1))              // wrong secret
	f.Add([]byte(gci), form, "us-east-1", "forged", uint8(2))        // wrong token
	f.Add([]byte(gci), form, "us-east-1", "", uint8(4))              // body changed after signing
	f.Add([]byte(gci+"&Extra=%zz"), form, "us-east-1", "", uint8(0)) // bad escape
	f.Add([]byte("Action=AssumeRole&Version=2011-06-15"), form, "us-east-1", "", uint8(0))
	f.Add([]byte("Version=2011-06-15&Action=GetCallerIdentity;x=1"), form, "us-east-1", "", uint8(0))
	f.Add([]byte(gci), "application/json", "us-east-1", "", uint8(0))
	f.Add([]byte(gci), "", "us-east-1", "", uint8(8)) // no token at all
	// One client for the whole run: Client makes a new transport, and one
	// per input leaves its idle connection open (10,000 inputs ran the
	// worker out of file descriptors).
	client := s.Client()
	f.Fuzz(func(t *testing.T, body []byte, contentType, region, token string, mode uint8) {
		notHeader := func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }
		if strings.ContainsFunc(contentType, notHeader) || strings.ContainsFunc(token, notHeader) {
			return // not header values an HTTP client sends
		}
		if !stsRegionRE.MatchString(region) {
			region = "us-east-1"
		}
		creds := good
		wrongSecret := mode&1 != 0
		if wrongSecret {
			creds.SecretAccessKey = strings.Repeat("x", 40)
		}
		wrongToken := mode&2 != 0 && token != good.SessionToken
		if wrongToken {
			creds.SessionToken = token
		}
		if mode&8 != 0 {
			creds.SessionToken, wrongToken = "", true
		}
		changed := mode&4 != 0
		req, err := http.NewRequest(http.MethodPost, s.URL+"/", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		sum := sha256.Sum256(body)
		if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "sts", region, now()); err != nil {
			t.Fatal(err)
		}
		if changed {
			// GetBody too: a transport that retries on a fresh connection
			// must resend this body, not the signed one under this length
			// (the server would wait for the missing bytes: a hung worker).
			sent := string(body) + "&Changed=1"
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(sent)), nil }
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader(sent)), int64(len(sent))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()

		// The model, in the emulator's documented order.
		sent := string(body)
		if changed {
			sent += "&Changed=1"
		}
		mt, _, _ := mime.ParseMediaType(contentType)
		q, perr := url.ParseQuery(sent)
		wantStatus, wantCode := 200, ""
		switch {
		case mt != form || perr != nil,
			q.Get("Action") != "GetCallerIdentity" || q.Get("Version") != stsVersion:
			wantStatus, wantCode = 400, ErrSTSInvalidAction
		case wrongSecret || changed:
			wantStatus, wantCode = 403, ErrSTSSignatureDoesNotMatch
		case wrongToken:
			wantStatus, wantCode = 403, ErrSTSInvalidClientTokenID
		}

		var a stsAnswer
		if err := xml.Unmarshal(raw, &a); err != nil || resp.Header.Get("Content-Type") != "text/xml" {
			t.Fatalf("answer %d %q is not STS XML: %v: %s", resp.StatusCode, resp.Header.Get("Content-Type"), err, raw)
		}
		reqID := resp.Header.Get("X-Amzn-RequestId")
		if a.Xmlns != stsNamespace || reqID == "" {
			t.Fatalf("namespace %q, request ID %q: %s", a.Xmlns, reqID, raw)
		}
		if resp.StatusCode != wantStatus {
			t.Fatalf("status %d (%s: %s), want %d %s", resp.StatusCode, a.Error.Code, a.Error.Message, wantStatus, wantCode)
		}
		if wantCode == "" {
			if a.XMLName.Local != "GetCallerIdentityResponse" || a.Result.Arn != wantArn || a.Result.Account != "123456789012" ||
				!strings.HasPrefix(a.Result.UserID, "AROA") || a.MetaReqID != reqID {
				t.Fatalf("GetCallerIdentity answered %+v, want ARN %s", a, wantArn)
			}
			return
		}
		if a.XMLName.Local != "ErrorResponse" || a.Error.Code != wantCode || a.Error.Type != "Sender" || a.Error.Message == "" || a.RequestID != reqID {
			t.Fatalf("error answer %+v, want code %s", a, wantCode)
		}
		if strings.ContainsAny(resp.Header.Get(ReasonHeader), "\r\n") {
			t.Fatalf("reason header holds a line break: %q", resp.Header.Get(ReasonHeader))
		}
	})
}
