package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/renewal/hostdir"
	"github.com/lanyard/lanyard/renewal/schedule"
)

// Errors callers branch on. [IsFinal] says which errors retrying cannot fix.
var (
	// ErrExpired means the current certificate has expired, so it cannot
	// authenticate a renewal over mTLS. Final: the host must enroll again
	// (RenewOptions.ReenrollTokenFile does that automatically).
	ErrExpired = errors.New("the current certificate has expired and cannot authenticate a renewal; enroll again")
	// ErrKeyTypeChange means the renewal would change the key's signing
	// family (say P-256 to RSA), which a running aws_signing_helper cannot
	// follow (hostdir.CheckKeyTypeChange is the rule). Final unless
	// RenewOptions.AllowKeyTypeChange is set.
	ErrKeyTypeChange = errors.New("renewal would change the key type")
	// ErrRejected means the CA answered and refused (Connect codes
	// Unauthenticated, PermissionDenied, InvalidArgument, FailedPrecondition,
	// NotFound, ...): revoked, unknown, or a request it will never accept.
	// Final. The Connect error is wrapped too (connect.CodeOf works).
	ErrRejected = errors.New("the CA refused the request")
	// ErrUnavailable means the CA could not be reached or failed
	// transiently (network errors, Unavailable, ResourceExhausted,
	// DeadlineExceeded, Internal, ...). Retryable.
	ErrUnavailable = errors.New("the CA is unavailable")
	// ErrWrite means the new version could not be written (disk full,
	// read-only or unwritable folder). The previous version stays current.
	// Retryable: the next attempt asks for a new certificate again.
	ErrWrite = errors.New("cannot write the new version (the previous version stays current)")
	// ErrNotEnrolled means the folder has no enrollment record or no
	// current version: run `lanyard enroll` first. Final.
	ErrNotEnrolled = errors.New("folder is not enrolled")
)

// IsFinal reports whether err is one that retrying cannot fix: an expired
// certificate, a refused request, a key type change, a folder that is not
// enrolled or holds invalid material, an answer from the CA that does not
// verify (caclient.ErrUntrustedIssue), or a cancelled context. Every other
// error (the CA unreachable, a write that failed) is worth retrying.
func IsFinal(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled),
		errors.Is(err, ErrExpired),
		errors.Is(err, ErrKeyTypeChange),
		errors.Is(err, ErrRejected),
		errors.Is(err, ErrNotEnrolled),
		errors.Is(err, caclient.ErrUntrustedIssue),
		errors.Is(err, hostdir.ErrNotEnrolled),
		errors.Is(err, hostdir.ErrInvalidMaterial),
		errors.Is(err, hostdir.ErrMismatch),
		errors.Is(err, hostdir.ErrUnsupportedKey),
		errors.Is(err, hostdir.ErrKeyTypeChanged),
		errors.Is(err, hostdir.ErrInvalidVersion):
		return true
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrWrite):
		return false
	}
	return false
}

// finalCodes are the Connect codes after which a retry cannot succeed.
var finalCodes = map[connect.Code]bool{
	connect.CodeUnauthenticated:    true,
	connect.CodePermissionDenied:   true,
	connect.CodeInvalidArgument:    true,
	connect.CodeFailedPrecondition: true,
	connect.CodeNotFound:           true,
	connect.CodeAlreadyExists:      true,
	connect.CodeUnimplemented:      true,
	connect.CodeOutOfRange:         true,
	// Everything else (Unavailable, ResourceExhausted, DeadlineExceeded,
	// Internal, Unknown, Aborted, network errors) is retryable.
}

// classifyRPC wraps an error of a call to the CA with ErrRejected or
// ErrUnavailable (keeping the original error in the chain).
func classifyRPC(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	if finalCodes[connect.CodeOf(err)] {
		return fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// RenewOptions change how [RenewDir] renews. The zero value renews with a
// new key of the current type, against the CA recorded in the folder.
type RenewOptions struct {
	// Now is the clock (expiry checks, version pruning); nil means time.Now.
	Now func() time.Time
	// KeyType of the new key; "" keeps the current key's type.
	KeyType string
	// AllowKeyTypeChange lets KeyType change the current key's signing
	// family (the CA still refuses a type the profile does not allow).
	// Without it such a renewal fails with ErrKeyTypeChange before anything
	// is sent; a change within a family needs no permission.
	AllowKeyTypeChange bool
	// ReenrollTokenFile, when set, is read when the current certificate
	// has expired: RenewDir then enrolls again with that single-use token
	// (new key) instead of failing with ErrExpired.
	ReenrollTokenFile string
	// Keep is how many versions the folder keeps (hostdir.Dir.Keep); zero
	// means hostdir's default.
	Keep int
	// Logger receives one line per renewal or re-enrollment; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o *RenewOptions) now() time.Time { return clock.Or(o.Now)() }

func (o *RenewOptions) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Result describes a completed renewal.
type Result struct {
	// Dir is the host folder (absolute).
	Dir string
	// Version is the new version folder's name; PreviousVersion the one it
	// replaced as `current`.
	Version, PreviousVersion string
	// Serial is the new certificate's serial (hex); PreviousSerial the
	// serial it replaces.
	Serial, PreviousSerial string
	// NotBefore and NotAfter bound the new certificate.
	NotBefore, NotAfter time.Time
	// Window is the CA's suggested window for the next renewal.
	Window schedule.Window
	// Reenrolled is true when the certificate had expired and the folder
	// was enrolled again with the re-enrollment token.
	Reenrolled bool
}

// RenewDir renews the host folder dir once. It resolves `current` once and
// loads that version, makes a new key (of the same type unless
// opts.KeyType and opts.AllowKeyTypeChange say otherwise), sends a CSR to
// the CA recorded in DIR/enrollment.json over mTLS with the current
// certificate and key, and writes the answer as a new version (swapping
// `current` atomically). On any failure the previous version stays current
// and untouched. The errors wrap the sentinels above; see [IsFinal].
func RenewDir(ctx context.Context, dir string, opts RenewOptions) (*Result, error) {
	log := opts.logger()
	enr, roots, err := hostdir.ReadEnrollment(dir)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w: %w", dir, ErrNotEnrolled, err)
	}
	d, err := hostdir.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w: %w", dir, ErrWrite, err)
	}
	d.Keep = opts.Keep
	d.Now = opts.Now
	d.AllowKeyTypeChange = opts.AllowKeyTypeChange
	cur, err := d.LoadCurrent()
	if err != nil {
		if errors.Is(err, hostdir.ErrNotEnrolled) {
			return nil, fmt.Errorf("renew %s: %w: %w", dir, ErrNotEnrolled, err)
		}
		return nil, fmt.Errorf("renew %s: load current version: %w", dir, err)
	}
	curType := KeyTypeOf(cur.Key)
	keyType := curType
	if opts.KeyType != "" {
		keyType = normaliseKeyType(opts.KeyType)
	}
	if err := hostdir.CheckKeyTypeChange(hostdir.KeyTypeOf(cur.Key), familyOf(keyType), opts.AllowKeyTypeChange); err != nil {
		return nil, fmt.Errorf("renew %s: %w: version %s holds a %s key, %s asked for: %w",
			d.Path, ErrKeyTypeChange, cur.Name, curType, keyType, err)
	}
	now := opts.now()
	prevSerial := v1.FormatSerial(cur.Cert.SerialNumber)
	if !now.Before(cur.Cert.NotAfter) {
		expired := fmt.Errorf("renew %s: %w (serial %s expired at %s)", d.Path, ErrExpired, prevSerial, cur.Cert.NotAfter.UTC().Format(time.RFC3339))
		if opts.ReenrollTokenFile == "" {
			log.Error("certificate expired; it cannot renew itself: enroll again, or configure a re-enrollment token file",
				"dir", d.Path, "serial", prevSerial, "not_after", cur.Cert.NotAfter)
			return nil, expired
		}
		log.Warn("certificate expired; enrolling again with the re-enrollment token",
			"dir", d.Path, "serial", prevSerial, "not_after", cur.Cert.NotAfter, "token_file", opts.ReenrollTokenFile)
		res, err := reenroll(ctx, d, enr, roots, cur, keyType, opts.ReenrollTokenFile, now)
		if err != nil {
			return nil, fmt.Errorf("%w; re-enrollment failed: %w", expired, err)
		}
		log.Info("enrolled again", "dir", d.Path, "version", res.Version, "serial", res.Serial, "not_after", res.NotAfter)
		return res, nil
	}

	key, err := NewKey(keyType)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", d.Path, err)
	}
	csr, keyPEM, err := NewCSR(key, caclient.Names{})
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w", d.Path, err)
	}
	tlsCert, err := tls.X509KeyPair(append(append([]byte{}, cur.CertPEM...), cur.ChainPEM...), cur.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("renew %s: version %s: %w: %w", d.Path, cur.Name, hostdir.ErrInvalidMaterial, err)
	}
	cl, err := caclient.New(enr.CA, roots, &tlsCert)
	if err != nil {
		return nil, fmt.Errorf("renew %s: %w: %s: %w", d.Path, ErrNotEnrolled, filepath.Join(d.Path, hostdir.RootsFile), err)
	}
	defer cl.HTTP.CloseIdleConnections()
	resp, err := cl.Certificates.Renew(ctx, connect.NewRequest(&v1.RenewRequest{Csr: csr}))
	if err != nil {
		return nil, classifyRPC(ctx, fmt.Sprintf("renew %s (serial %s) at %s", d.Path, prevSerial, enr.CA), err)
	}
	roots, fetchErr := refreshRoots(ctx, d.Path, cl, roots, now)
	res, err := store(d, cur, roots, now, resp.Msg.GetBundle(), resp.Msg.GetRenewalInfo(), keyPEM)
	if err != nil {
		return nil, retryableUntrusted(err, fetchErr)
	}
	log.Info("renewed", "dir", d.Path, "version", res.Version, "serial", res.Serial,
		"previous_serial", prevSerial, "not_after", res.NotAfter)
	return res, nil
}

// reenroll enrolls the folder again with the single-use token in tokenFile.
// The new certificate must carry the current one's names: the CSR asks for
// them, so the CA refuses a token for another identity.
func reenroll(ctx context.Context, d *hostdir.Dir, enr *hostdir.Enrollment, roots []byte, cur *hostdir.Version, keyType, tokenFile string, now time.Time) (*Result, error) {
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("re-enrollment token: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return nil, fmt.Errorf("re-enrollment token %s is empty", tokenFile)
	}
	key, err := NewKey(keyType)
	if err != nil {
		return nil, err
	}
	csr, keyPEM, err := NewCSR(key, caclient.NamesOf(cur.Cert))
	if err != nil {
		return nil, err
	}
	cl, err := caclient.New(enr.CA, roots, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotEnrolled, filepath.Join(d.Path, hostdir.RootsFile), err)
	}
	defer cl.HTTP.CloseIdleConnections()
	resp, err := cl.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: token, Csr: csr}))
	if err != nil {
		return nil, classifyRPC(ctx, "enroll at "+enr.CA, err)
	}
	// The token is spent: a retry cannot succeed, so a refusal stays
	// final whether or not the roots could be fetched.
	roots, _ = refreshRoots(ctx, d.Path, cl, roots, now)
	res, err := store(d, cur, roots, now, resp.Msg.GetBundle(), resp.Msg.GetRenewalInfo(), keyPEM)
	if err != nil {
		return nil, err
	}
	res.Reenrolled = true
	return res, nil
}

// refreshRoots learns a root rotation before the renewed leaf is checked:
// it fetches /roots.pem over cl, keeps of it what [caclient.RefreshRoots]
// trusts under the stored roots, and replaces DIR/ca.pem atomically when
// that differs. On any failure the stored roots stay, untouched, and are
// returned: a leaf under a root the host never accepted then fails the
// check in store. fetchErr is the error of the fetch itself (nil when the
// CA answered): see [retryableUntrusted].
func refreshRoots(ctx context.Context, dir string, cl *caclient.Clients, stored []byte, now time.Time) (roots []byte, fetchErr error) {
	log := slog.Default()
	served, err := cl.Roots(ctx)
	if err != nil {
		log.Warn("could not refresh the CA roots; keeping the stored ones", "dir", dir, "err", err)
		return stored, err
	}
	trusted, err := caclient.RefreshRoots(stored, served, now)
	if err != nil {
		log.Warn("refused the CA's roots; keeping the stored ones", "dir", dir, "err", err)
		return stored, nil
	}
	if bytes.Equal(trusted, stored) {
		return stored, nil
	}
	if err := hostdir.WriteRoots(dir, trusted); err != nil {
		log.Warn("could not store the refreshed CA roots", "dir", dir, "err", err)
		return stored, fmt.Errorf("store refreshed roots: %w", err)
	}
	log.Info("CA roots refreshed", "dir", dir, "file", hostdir.RootsFile)
	return trusted, nil
}

// retryableUntrusted turns a renewed certificate refused as not under a
// stored root into a retryable failure when the roots could not be
// refreshed first for a reason that may pass (fetchErr wraps
// caclient.ErrRootsUnavailable): during a root rotation the new
// certificate chains to a root the host learns only from /roots.pem, so a
// transient failure of that fetch must not end the agent's retries. The CA
// keeps the current certificate renewable for issuance.RenewalRetryGrace,
// and the retry fetches the roots again. Wrong names, or a refusal after
// the CA answered /roots.pem, stay final; nothing is written either way.
func retryableUntrusted(err, fetchErr error) error {
	if err == nil || !errors.Is(err, caclient.ErrUnknownRoot) || !errors.Is(fetchErr, caclient.ErrRootsUnavailable) {
		return err
	}
	// %v, not %w: ErrUntrustedIssue must leave the chain, or IsFinal
	// would still stop the retries.
	return fmt.Errorf("%w: the CA's roots could not be fetched (%v), so the new certificate could not be checked: %v", ErrUnavailable, fetchErr, err)
}

// store checks a bundle from the CA and writes it as the folder's new
// version. The check comes first, so nothing is written unless the leaf
// chains to the folder's stored roots (DIR/ca.pem) for client
// authentication and carries exactly the current certificate's names.
func store(d *hostdir.Dir, cur *hostdir.Version, roots []byte, now time.Time, b *v1.Bundle, info *v1.RenewalInfo, keyPEM []byte) (*Result, error) {
	if _, err := caclient.VerifyIssued(roots, []byte(b.GetCertificatePem()), []byte(b.GetChainPem()), new(caclient.NamesOf(cur.Cert)), now); err != nil {
		return nil, fmt.Errorf("renew %s: version %s stays current: %w", d.Path, cur.Name, err)
	}
	ver, err := d.Write(hostdir.Material{CertPEM: []byte(b.GetCertificatePem()), ChainPEM: []byte(b.GetChainPem()), KeyPEM: keyPEM})
	switch {
	case ver == "" && errors.Is(err, hostdir.ErrKeyTypeChanged):
		return nil, fmt.Errorf("renew %s: %w: %w", d.Path, ErrKeyTypeChange, err)
	case ver == "" && (errors.Is(err, hostdir.ErrInvalidMaterial) || errors.Is(err, hostdir.ErrMismatch) || errors.Is(err, hostdir.ErrUnsupportedKey)):
		return nil, fmt.Errorf("renew %s: the CA's answer does not fit the new key: %w", d.Path, err)
	case ver == "":
		return nil, fmt.Errorf("renew %s: %w: version %s stays current: %w", d.Path, ErrWrite, cur.Name, err)
	case err != nil:
		// The new version is current; only a Certbot-style link or an
		// fsync of DIR failed. The renewal itself succeeded.
		slog.Default().Warn("new version is current, but the folder needs attention", "dir", d.Path, "version", ver, "err", err)
	}
	res := &Result{
		Dir: d.Path, Version: ver, PreviousVersion: cur.Name,
		Serial: b.GetSerial(), PreviousSerial: v1.FormatSerial(cur.Cert.SerialNumber),
		NotBefore: b.GetNotBefore().AsTime(), NotAfter: b.GetNotAfter().AsTime(),
	}
	if info != nil && info.GetWindowEnd() != nil {
		res.Window = schedule.Window{Start: info.GetWindowStart().AsTime(), End: info.GetWindowEnd().AsTime(), Reason: info.GetReason()}
	} else {
		res.Window = schedule.Scheduled(res.NotBefore, res.NotAfter)
	}
	return res, nil
}

// Status is what [CheckDir] finds in a folder: the current version and
// when it should be renewed.
type Status struct {
	// Version is the current version, loaded as a whole.
	Version *hostdir.Version
	// Serial is the current certificate's serial (hex).
	Serial string
	// Window is the renewal window: the CA's answer, or the default window
	// computed from the certificate when the CA could not be asked.
	Window schedule.Window
	// WindowErr is why the CA could not be asked (nil when it answered).
	WindowErr error
}

// CheckDir loads the current version of dir and asks the CA for its
// renewal window (GetRenewalInfo), falling back to
// schedule.Scheduled when the CA cannot be reached.
func CheckDir(ctx context.Context, dir string) (*Status, error) {
	enr, roots, err := hostdir.ReadEnrollment(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotEnrolled, err)
	}
	d, err := hostdir.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	v, err := d.LoadCurrent()
	if err != nil {
		if errors.Is(err, hostdir.ErrNotEnrolled) {
			return nil, fmt.Errorf("%w: %w", ErrNotEnrolled, err)
		}
		return nil, fmt.Errorf("load current version of %s: %w", dir, err)
	}
	st := &Status{Version: v, Serial: v1.FormatSerial(v.Cert.SerialNumber)}
	st.Window, st.WindowErr = askWindow(ctx, enr.CA, roots, v.Cert)
	return st, nil
}

// askWindow asks the CA for cert's renewal window; on failure it returns
// the default window together with the error.
func askWindow(ctx context.Context, caURL string, roots []byte, cert *x509.Certificate) (schedule.Window, error) {
	fallback := schedule.Scheduled(cert.NotBefore, cert.NotAfter)
	cl, err := caclient.New(caURL, roots, nil)
	if err != nil {
		return fallback, fmt.Errorf("renewal info: %w", err)
	}
	defer cl.HTTP.CloseIdleConnections()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := cl.Certificates.GetRenewalInfo(cctx, connect.NewRequest(&v1.GetRenewalInfoRequest{Serial: v1.FormatSerial(cert.SerialNumber)}))
	if err != nil {
		return fallback, classifyRPC(ctx, "renewal info from "+caURL, err)
	}
	info := resp.Msg.GetRenewalInfo()
	if info == nil || info.GetWindowEnd() == nil {
		return fallback, fmt.Errorf("renewal info from %s: %w: empty answer", caURL, ErrUnavailable)
	}
	return schedule.Window{Start: info.GetWindowStart().AsTime(), End: info.GetWindowEnd().AsTime(), Reason: info.GetReason()}, nil
}
