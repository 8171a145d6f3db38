package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lanyard/lanyard/anchors/emulator"
	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/realtools"
	"github.com/lanyard/lanyard/internal/servetest"
	"github.com/lanyard/lanyard/internal/testca"
	"github.com/lanyard/lanyard/issuance"
)

// SoakRotationsEnv sets the number of rotations of TestRotationSoak
// (default 200).
const soakRotationsEnv = "LANYARD_SOAK_ROTATIONS"

// shortCredentials wraps the emulator so that every CreateSession answer
// expires in two minutes: aws_signing_helper serve then refreshes (a new
// CreateSession, reading certificate and key again) on every GET, which is
// what the soak needs to exercise.
func shortCredentials(e *emulator.Emulator) http.Handler {
	h := e.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sessions" {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var m map[string]any
		if rec.Code == http.StatusCreated || rec.Code == http.StatusOK {
			if json.Unmarshal(body, &m) == nil {
				if set, ok := m["credentialSet"].([]any); ok {
					for _, s := range set {
						if c, ok := s.(map[string]any)["credentials"].(map[string]any); ok {
							c["expiration"] = time.Now().Add(2 * time.Minute).UTC().Format(time.RFC3339)
						}
					}
					body, _ = json.Marshal(m)
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRotationSoak runs the real aws_signing_helper serve continuously
// under the agent's supervision (the hand-off DESIGN calls race-free for a
// long-running helper: the helper only ever reads one immutable version
// folder, and is moved to the new version after each renewal) while the
// certificate (5-minute profile) is renewed every ~100 ms with a forced
// RenewDir, and a client polls the IMDS endpoint; every answer forces a
// refresh (a CreateSession signed with the files on disk). It asserts zero
// failed or empty credential answers.
//
// A poll that finds the port closed or its token unknown (the few
// milliseconds while the supervisor swaps helper processes) retries the
// way AWS SDK IMDS clients do (a new token, a short backoff); such retries
// are counted and logged, and a poll that has not got credentials within
// 5 s counts as a failure.
func TestRotationSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test (200 rotations): make test runs it, make test-quick (-short) does not")
	}
	rotations := 200
	if v := os.Getenv(soakRotationsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q", soakRotationsEnv, v)
		}
		rotations = n
	}
	helper := realtools.SigningHelper(t)
	ca := testca.Start(t, testca.Options{Profiles: map[string]issuance.ProfileConfig{
		"covalent": {CN: []string{"*.covalent.example.net"}, DNS: []string{"*.covalent.example.net"},
			DefaultTTL: 5 * time.Minute, MaxTTL: 5 * time.Minute},
	}})
	emu := emulator.New(emulator.Options{})
	emuSrv := httptest.NewServer(shortCredentials(emu))
	t.Cleanup(emuSrv.Close)
	anchorArn, profileArn, err := emu.Seed(ca.Authority.Roots(), testRole)
	if err != nil {
		t.Fatal(err)
	}
	dir := enroll(t, ca, ca.URL, "soak.covalent.example.net", "P-256")

	port := servetest.FreePort(t)
	helperOut := &syncBuffer{}
	sup := &Supervisor{Helper: helper, Port: port, Env: realtools.HelperEnv(), Output: helperOut,
		Args: []string{"--trust-anchor-arn", anchorArn, "--profile-arn", profileArn, "--role-arn", testRole, "--endpoint", emuSrv.URL}}
	t.Cleanup(sup.Stop)
	ctx := context.Background()
	vp, err := ResolveVersion(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Run(ctx, vp); err != nil {
		t.Fatalf("%v\n%s", err, helperOut.String())
	}

	var answers, failures, retries, emptyAnswers atomic.Int64
	var failMu sync.Mutex
	var firstFailures []string
	fail := func(msg string) {
		failures.Add(1)
		failMu.Lock()
		if len(firstFailures) < 5 {
			firstFailures = append(firstFailures, msg)
		}
		failMu.Unlock()
	}
	stop := make(chan struct{})
	pollerDone := make(chan struct{})
	go func() {
		defer close(pollerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, code, err := imdsGet(port)
				if err == nil {
					answers.Add(1)
					if c.AccessKeyId == "" || c.SecretAccessKey == "" || c.Token == "" || c.Code != "Success" {
						emptyAnswers.Add(1)
						fail("empty credential answer: " + c.Code)
					}
					break
				}
				// Connection refused/reset/broken while helpers are swapped
				// (the old process exits mid-request, or closes the
				// keep-alive connection the client is reusing: net/http's
				// "server closed idle connection"), or a token the new
				// helper never issued (401): retry, as the SDKs' IMDS
				// clients do on transport errors.
				transient := errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
					code == http.StatusUnauthorized || strings.Contains(err.Error(), "EOF") ||
					strings.Contains(err.Error(), "server closed idle connection")
				if !transient || time.Now().After(deadline) {
					fail(err.Error())
					break
				}
				retries.Add(1)
				<-time.After(5 * time.Millisecond)
			}
		}
	}()

	start := time.Now()
	serials := map[string]bool{}
	for i := range rotations {
		res, err := RenewDir(ctx, dir, RenewOptions{Logger: discardLogger})
		if err != nil {
			t.Fatalf("rotation %d: %v", i, err)
		}
		serials[res.Serial] = true
		if err := sup.Run(ctx, filepath.Join(dir, "versions", res.Version)); err != nil {
			t.Fatalf("rotation %d: %v\n%s", i, err, helperOut.String())
		}
		<-time.After(100 * time.Millisecond) // let the poller use this helper
	}
	close(stop)
	<-pollerDone
	took := time.Since(start)

	// Every rotation's certificate reached Roles Anywhere.
	sent := map[string]bool{}
	for _, s := range emu.Sessions() {
		sent[lanyardv1.FormatSerial(s.Serial)] = true
	}
	missing := 0
	for s := range serials {
		if !sent[s] {
			missing++
		}
	}
	t.Logf("rotations=%d failures=%d empty=%d answers=%d swap_retries=%d sessions=%d serials_not_seen=%d duration=%s",
		rotations, failures.Load(), emptyAnswers.Load(), answers.Load(), retries.Load(), len(emu.Sessions()), missing, took.Round(time.Millisecond))
	if failures.Load() != 0 {
		t.Errorf("%d failed or empty credential answers, first: %v", failures.Load(), firstFailures)
	}
	if answers.Load() < int64(rotations) {
		t.Errorf("only %d answers over %d rotations", answers.Load(), rotations)
	}
	if missing > 0 {
		t.Errorf("%d of %d renewed certificates never reached Roles Anywhere", missing, rotations)
	}
	if strings.Contains(helperOut.String(), "Error generating credentials") || strings.Contains(helperOut.String(), "failed to read") {
		t.Errorf("the helper logged errors:\n%s", helperOut.String())
	}
}
