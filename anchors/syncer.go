package anchors

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere"
	"github.com/aws/aws-sdk-go-v2/service/rolesanywhere/types"

	"github.com/lanyard/lanyard/internal/clock"
	"github.com/lanyard/lanyard/revocation"
	"github.com/lanyard/lanyard/store"
)

// MaxBundleCertificates is how many certificates a trust anchor holds at
// most ("Certificates per trust anchor: 2, not adjustable").
const MaxBundleCertificates = 2

// Source is the CA whose roots the anchor must trust; *ca.Authority
// implements it.
type Source interface {
	// Roots are the CA's root certificates (two during a rotation).
	Roots() []*x509.Certificate
	// Intermediate is the issuing CA certificate.
	Intermediate() *x509.Certificate
}

// RetiredRootsSource is a Source that also names the old roots of its
// finished root rotations (*ca.Authority is one): the sync removes such
// a root from the anchor as the CA's own, where any other certificate
// that is not a root of the CA is foreign and kept without Force.
type RetiredRootsSource interface {
	RetiredRoots() []*x509.Certificate
}

// Syncer keeps one trust anchor and its CRL equal to the CA's. It is safe
// for concurrent use. Close it when done.
type Syncer struct {
	cfg Config
	api API
	src Source
	db  store.Meta
	now func() time.Time
	log *slog.Logger

	syncMu sync.Mutex // one Sync at a time

	persistMu sync.Mutex // serialises status writes
	mu        sync.Mutex // guards status and inv
	status    Status
	// unread is set while the recorded status could not be read (the
	// store unreachable): the in-memory one is then not the record, and
	// writing it would overwrite the record (the anchor's ARN with "").
	unread bool
	inv    Inventory // for RefreshSubjects (nil: none)

	// CRL pushes (see crl.go).
	base       context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	crlMu      sync.Mutex
	latest     *revocation.CRL // the newest CRL handed to PublishCRL
	pending    *revocation.CRL // the next to push (latest-wins)
	pushing    bool
	closed     bool
	pushDone   chan struct{} // closed and replaced after every push attempt
	minBackoff time.Duration
}

// New returns a Syncer for cfg. api is the Roles Anywhere client (see
// NewClient), src the CA, db the store the status is persisted in (nil:
// not persisted), now the clock (nil: time.Now), log the logger (nil:
// discard). A status persisted earlier is loaded, so an anchor lanyard
// created is found again after a restart.
func New(cfg Config, api API, src Source, db store.Meta, now func() time.Time, log *slog.Logger) *Syncer {
	cfg = cfg.withDefaults()
	now = clock.Or(now)
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Syncer{cfg: cfg, api: api, src: src, db: db, now: now, log: log,
		pushDone: make(chan struct{}), minBackoff: 200 * time.Millisecond}
	s.base, s.cancel = context.WithCancel(context.Background())
	var err error
	s.status, err = s.loadStatus() // unreadable now: sync reads it again before it would create
	s.unread = err != nil
	return s
}

// loadStatus returns the persisted status (none: the zero Status) with
// the configured ARNs applied, and an error when the store could not say
// (unreachable), with the zero Status: callers must not take that for
// "no trust anchor yet".
func (s *Syncer) loadStatus() (Status, error) {
	var st Status
	var rerr error
	if s.db != nil {
		p, err := LoadStatusFor(s.db, s.cfg.Target)
		switch {
		case err == nil:
			st = *p
		case !errors.Is(err, ErrNoStatus):
			rerr = err
		}
	}
	if s.cfg.TrustAnchorARN != "" && s.cfg.TrustAnchorARN != st.TrustAnchorARN {
		// A different anchor than the one recorded: forget its state.
		st = Status{TrustAnchorARN: s.cfg.TrustAnchorARN}
	}
	if s.cfg.ProfileARN != "" {
		st.ProfileARN = s.cfg.ProfileARN
	}
	if s.cfg.RoleARN != "" {
		st.RoleARN = s.cfg.RoleARN
	}
	return st, rerr
}

// Reload replaces the status with the one persisted in the store: on
// replicas sharing a store, the replica that takes the leader lease
// continues from what the previous leader created and pushed (the
// anchor it created, the CRL number AWS holds) instead of from what it
// read at its own start.
func (s *Syncer) Reload() {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	st, err := s.loadStatus()
	if err != nil {
		// Keep what this replica knows; sync reads it again before it
		// would create anything.
		s.log.Warn("anchors: could not reload the recorded status", "err", err)
		s.mu.Lock()
		s.unread = true
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.status, s.unread = st, false
	s.mu.Unlock()
}

// Close stops background CRL pushes and waits for them. Run and Sync calls
// in flight are not waited for (cancel their contexts).
func (s *Syncer) Close() error {
	s.crlMu.Lock()
	s.closed = true
	s.pending = nil
	s.crlMu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Target is the target this Syncer keeps ("" the default; Config.Target).
func (s *Syncer) Target() string { return s.cfg.Target }

// TrustAnchorARN is the anchor being synced ("" before it exists).
func (s *Syncer) TrustAnchorARN() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.TrustAnchorARN
}

// ProfileARN is the profile configured or created ("" if none).
func (s *Syncer) ProfileARN() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.ProfileARN
}

// Report is what one Sync found and did (or, in a dry run, would do).
type Report struct {
	// DryRun: nothing was changed; the Created/Updated/Enabled fields say
	// what would have been done.
	DryRun bool
	// TrustAnchorARN and ProfileARN are the anchor and profile ("" when a
	// dry run would create them).
	TrustAnchorARN, ProfileARN string
	// Created: the anchor was created. ProfileCreated: a profile too.
	Created, ProfileCreated bool
	// Updated: UpdateTrustAnchor was called to fix the bundle.
	Updated bool
	// Enabled: the anchor was disabled and has been enabled.
	Enabled bool
	// Desired are the CA's roots.
	Desired []CertInfo
	// Current is the anchor's bundle as found; Result as left.
	Current, Result []CertInfo
	// Missing are roots of the CA the anchor lacked.
	Missing []CertInfo
	// Foreign are certificates in the anchor that are not the CA's roots;
	// Removed those of them taken out (Force), the rest were kept.
	Foreign, Removed []CertInfo
	// Retired are old roots of the CA's finished root rotations the
	// anchor still held; they are taken out (not foreign: the CA retired
	// them, and no certificate chains to them any more).
	Retired []CertInfo
	// Changes are the anchor and profile settings found different from
	// the configuration (and, unless DryRun, repaired).
	Changes []Change
	// KillSwitch is the kill switch's tag value ("" when released).
	KillSwitch string
}

// InSync reports whether the anchor and profile needed no change.
func (r *Report) InSync() bool {
	return !r.Created && !r.Updated && !r.Enabled && len(r.Missing) == 0 && len(r.Removed) == 0 && len(r.Retired) == 0 && len(r.Changes) == 0
}

// Drift describes the difference in one line ("" if none).
func (r *Report) Drift() string {
	var parts []string
	if r.Created {
		parts = append(parts, "no trust anchor")
	}
	if len(r.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d CA root(s) missing from the anchor", len(r.Missing)))
	}
	if len(r.Retired) > 0 {
		parts = append(parts, fmt.Sprintf("%d old root(s) of a finished root rotation in the anchor", len(r.Retired)))
	}
	if len(r.Foreign) > 0 {
		kept := len(r.Foreign) - len(r.Removed)
		parts = append(parts, fmt.Sprintf("%d foreign certificate(s) in the anchor (%d removed, %d kept)", len(r.Foreign), len(r.Removed), kept))
	}
	if r.Enabled {
		parts = append(parts, "anchor disabled")
	}
	for _, c := range r.Changes {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, "; ")
}

// String prints the report as a short diff: "+" added, "-" removed, "!"
// foreign and kept, " " unchanged.
func (r *Report) String() string {
	var b strings.Builder
	verb := func(done, would string) string {
		if r.DryRun {
			return would
		}
		return done
	}
	anchor := r.TrustAnchorARN
	if anchor == "" {
		anchor = "(new)"
	}
	fmt.Fprintf(&b, "trust anchor %s\n", anchor)
	switch {
	case r.Created:
		fmt.Fprintf(&b, "  %s the trust anchor\n", verb("created", "would create"))
	case r.Updated:
		fmt.Fprintf(&b, "  %s the bundle\n", verb("updated", "would update"))
	case r.InSync():
		fmt.Fprintf(&b, "  in sync\n")
	}
	if r.ProfileCreated {
		fmt.Fprintf(&b, "  %s profile %s\n", verb("created", "would create"), r.ProfileARN)
	}
	if r.Enabled {
		fmt.Fprintf(&b, "  %s the trust anchor\n", verb("enabled", "would enable"))
	}
	removed := map[string]bool{}
	for _, c := range append(slices.Clone(r.Removed), r.Retired...) {
		removed[c.SHA256] = true
	}
	missing := map[string]bool{}
	for _, c := range r.Missing {
		missing[c.SHA256] = true
	}
	foreign := map[string]bool{}
	for _, c := range r.Foreign {
		foreign[c.SHA256] = true
	}
	for _, c := range r.Current {
		mark := " "
		switch {
		case removed[c.SHA256]:
			mark = "-"
		case foreign[c.SHA256]:
			mark = "!"
		}
		fmt.Fprintf(&b, "  %s %s\n", mark, c)
	}
	for _, c := range r.Missing {
		fmt.Fprintf(&b, "  + %s\n", c)
	}
	if kept := len(r.Foreign) - len(r.Removed); kept > 0 {
		fmt.Fprintf(&b, "  ! = not issued by this CA, kept (use --force to remove)\n")
	}
	if len(r.Retired) > 0 {
		fmt.Fprintf(&b, "  - %d old root(s) of a finished root rotation (lanyard ca rotate-root --finish)\n", len(r.Retired))
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "  ~ %s %s: %s -> %s%s\n", c.Resource, c.Field, c.From, c.To, verb("", " (would change)"))
	}
	if r.KillSwitch != "" {
		fmt.Fprintf(&b, "  KILL SWITCH ENGAGED (%s): trust anchor and profile held disabled; `lanyard anchors enable` releases it\n", r.KillSwitch)
	}
	return b.String()
}

func bundlePEM(certs []*x509.Certificate) string {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.String()
}

// parseBundle reads the PEM certificates of an anchor's bundle, skipping
// (and counting) blocks that are not parseable certificates.
func parseBundle(data string) (certs []*x509.Certificate, junk int) {
	rest := []byte(data)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if blk.Type != "CERTIFICATE" || err != nil {
			junk++
			continue
		}
		certs = append(certs, c)
	}
	return certs, junk
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func infos(certs []*x509.Certificate) []CertInfo {
	out := make([]CertInfo, 0, len(certs))
	for _, c := range certs {
		out = append(out, certInfo(c))
	}
	return out
}

// desiredRoots returns the CA's roots, deduplicated, refusing more than a
// trust anchor can hold.
func (s *Syncer) desiredRoots() ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for _, c := range s.src.Roots() {
		if !containsCert(roots, c) {
			roots = append(roots, c)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("anchors: %w: the CA has no root certificate", ErrInvalidConfig)
	}
	if len(roots) > MaxBundleCertificates {
		return nil, fmt.Errorf("anchors: %w: the CA has %d roots, a trust anchor holds at most %d (finish the rotation: drop the old root from roots.pem)",
			ErrBundleTooLarge, len(roots), MaxBundleCertificates)
	}
	return roots, nil
}

// idOf returns the resource id at the end of an ARN ("…:trust-anchor/ID").
func idOf(arn string) string {
	if i := strings.LastIndexByte(arn, '/'); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

// Sync makes the trust anchor's bundle hold exactly the CA's roots (plus,
// without Config.Force, any foreign certificate it already held), creates
// the anchor (and a profile) when asked, and enables it. With dryRun it
// changes nothing and reports what it would do. It returns the report
// even with an error where one was made; a foreign certificate left in
// the anchor makes the error wrap ErrForeignCertificate after the rest of
// the sync has been done.
func (s *Syncer) Sync(ctx context.Context, dryRun bool) (*Report, error) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	rep, err := s.sync(ctx, dryRun)
	if dryRun {
		return rep, err
	}
	s.update(ctx, func(st *Status) {
		st.LastSync = s.now().UTC()
		if rep != nil {
			st.Drift = rep.Drift()
			if rep.Result != nil {
				st.Bundle = rep.Result
			}
			st.Foreign = append(rep.Foreign[:0:0], rep.Foreign...)
			for _, r := range rep.Removed {
				st.Foreign = removeInfo(st.Foreign, r)
			}
		}
		if rep != nil {
			st.KillSwitch = rep.KillSwitch
			st.Changes = append([]Change(nil), rep.Changes...)
		}
		switch {
		case err != nil && !errors.Is(err, ErrForeignCertificate):
			st.LastResult, st.LastError = "error", err.Error()
		case rep.Created:
			st.LastResult, st.LastError = "created", ""
		case !rep.InSync():
			st.LastResult, st.LastError = "updated", ""
		default:
			st.LastResult, st.LastError = "in sync", ""
		}
		if errors.Is(err, ErrForeignCertificate) {
			st.LastError = err.Error()
		}
	})
	if err != nil {
		s.log.Error("anchors: sync failed", "trust_anchor", s.TrustAnchorARN(), "err", err)
	} else if rep != nil && !rep.InSync() {
		s.log.Info("anchors: trust anchor synced", "trust_anchor", rep.TrustAnchorARN, "drift", rep.Drift())
	}
	return rep, err
}

func removeInfo(list []CertInfo, c CertInfo) []CertInfo {
	out := list[:0]
	for _, x := range list {
		if x.SHA256 != c.SHA256 {
			out = append(out, x)
		}
	}
	return out
}

func (s *Syncer) sync(ctx context.Context, dryRun bool) (*Report, error) {
	if s.cfg.Profile != nil {
		if err := s.cfg.Profile.Validate(); err != nil {
			return nil, err
		}
	}
	if s.cfg.Notifications != nil {
		if err := s.cfg.Notifications.Validate(); err != nil {
			return nil, err
		}
	}
	roots, err := s.desiredRoots()
	if err != nil {
		return nil, err
	}
	st := s.Status()
	rep := &Report{DryRun: dryRun, Desired: infos(roots), TrustAnchorARN: st.TrustAnchorARN, ProfileARN: st.ProfileARN}

	if st.TrustAnchorARN == "" && s.db != nil {
		// Create only when the store confirms that no anchor is recorded:
		// a status unreadable at start or at a change of leader (the
		// database restarting) looks empty, and creating then made a
		// second trust anchor that took every later CRL while the hosts
		// kept using the first (found by the chaos soak).
		rec, err := s.loadStatus()
		if err != nil {
			return nil, fmt.Errorf("anchors: read the recorded trust anchor before creating one: %w", err)
		}
		s.mu.Lock()
		if s.unread || rec.TrustAnchorARN != "" {
			s.status = rec
		}
		s.unread = false
		s.mu.Unlock()
		st = s.Status()
		rep.TrustAnchorARN, rep.ProfileARN = st.TrustAnchorARN, st.ProfileARN
	}
	if st.TrustAnchorARN == "" {
		if !s.cfg.Create {
			return nil, fmt.Errorf("anchors: %w: set anchors.trust_anchor_arn, or let lanyard create one (anchors.create, --create)", ErrNoTrustAnchor)
		}
		return rep, s.create(ctx, rep, roots, dryRun)
	}

	out, err := s.api.GetTrustAnchor(ctx, &rolesanywhere.GetTrustAnchorInput{TrustAnchorId: aws.String(idOf(st.TrustAnchorARN))})
	if err != nil {
		if errorCode(err) == "ResourceNotFoundException" {
			if st.Created && s.cfg.Create && s.cfg.TrustAnchorARN == "" {
				// lanyard made it and it is gone (an emulator restart, a
				// deletion): make it again.
				s.log.Warn("anchors: the trust anchor lanyard created is gone; creating a new one", "trust_anchor", st.TrustAnchorARN)
				rep.TrustAnchorARN, rep.ProfileARN = "", s.cfg.ProfileARN
				return rep, s.create(ctx, rep, roots, dryRun)
			}
			return rep, fmt.Errorf("anchors: %w: %s (%v)", ErrTrustAnchorNotFound, st.TrustAnchorARN, err)
		}
		return rep, fmt.Errorf("anchors: get trust anchor %s: %w", st.TrustAnchorARN, err)
	}
	ta := out.TrustAnchor
	if ta == nil || ta.Source == nil {
		return rep, fmt.Errorf("anchors: get trust anchor %s: empty answer", st.TrustAnchorARN)
	}
	if ta.Source.SourceType != types.TrustAnchorTypeCertificateBundle {
		return rep, fmt.Errorf("anchors: %w: %s is a %s anchor", ErrUnsupportedSource, st.TrustAnchorARN, ta.Source.SourceType)
	}
	data, _ := ta.Source.SourceData.(*types.SourceDataMemberX509CertificateData)
	var current []*x509.Certificate
	junk := 0
	if data != nil {
		current, junk = parseBundle(data.Value)
	}
	rep.Current = infos(current)

	// Compare by certificate.
	var missing, foreign, retired []*x509.Certificate
	for _, r := range roots {
		if !containsCert(current, r) {
			missing = append(missing, r)
		}
	}
	var retiredRoots []*x509.Certificate
	if rs, ok := s.src.(RetiredRootsSource); ok {
		retiredRoots = rs.RetiredRoots()
	}
	for _, c := range current {
		switch {
		case containsCert(roots, c):
		case containsCert(retiredRoots, c):
			retired = append(retired, c)
		default:
			foreign = append(foreign, c)
		}
	}
	rep.Missing, rep.Foreign, rep.Retired = infos(missing), infos(foreign), infos(retired)

	var foreignErr error
	want := roots
	if len(foreign) > 0 {
		if s.cfg.Force {
			rep.Removed = rep.Foreign
		} else {
			want = append(append([]*x509.Certificate(nil), roots...), foreign...)
			foreignErr = fmt.Errorf("anchors: %w: %s kept (remove it with --force / anchors force)", ErrForeignCertificate, describe(foreign))
			if len(want) > MaxBundleCertificates {
				rep.Result = rep.Current
				return rep, fmt.Errorf("anchors: %w: %s; the CA's %d root(s) do not fit beside it (at most %d certificates); nothing changed, use --force to replace it",
					ErrForeignCertificate, describe(foreign), len(roots), MaxBundleCertificates)
			}
		}
	}
	drift := len(missing) > 0 || len(rep.Removed) > 0 || len(retired) > 0 || junk > 0
	if drift {
		rep.Updated = true
		if !dryRun {
			_, err := s.api.UpdateTrustAnchor(ctx, &rolesanywhere.UpdateTrustAnchorInput{
				TrustAnchorId: aws.String(idOf(st.TrustAnchorARN)),
				Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle,
					SourceData: &types.SourceDataMemberX509CertificateData{Value: bundlePEM(want)}},
			})
			if err != nil {
				rep.Updated = false
				rep.Result = rep.Current
				return rep, fmt.Errorf("anchors: update trust anchor %s: %w", st.TrustAnchorARN, err)
			}
		}
		rep.Result = infos(want)
	} else {
		rep.Result = rep.Current
	}
	if err := s.reconcileAnchor(ctx, rep, ta, dryRun); err != nil {
		return rep, err
	}
	if err := s.reconcileProfile(ctx, rep, dryRun); err != nil {
		return rep, err
	}
	return rep, foreignErr
}

func describe(certs []*x509.Certificate) string {
	var parts []string
	for _, c := range certs {
		parts = append(parts, certInfo(c).String())
	}
	return strings.Join(parts, ", ")
}

// create makes the trust anchor (enabled, holding roots) and, when no
// profile is configured and a role is, an enabled profile for the role.
func (s *Syncer) create(ctx context.Context, rep *Report, roots []*x509.Certificate, dryRun bool) error {
	rep.Created = true
	rep.Missing = infos(roots)
	rep.Result = infos(roots)
	wantProfile := s.cfg.ProfileARN == "" && s.cfg.RoleARN != ""
	if dryRun {
		rep.ProfileCreated = wantProfile
		return nil
	}
	cin := &rolesanywhere.CreateTrustAnchorInput{
		Name:    aws.String(s.cfg.Name),
		Enabled: aws.Bool(true),
		Source: &types.Source{SourceType: types.TrustAnchorTypeCertificateBundle,
			SourceData: &types.SourceDataMemberX509CertificateData{Value: bundlePEM(roots)}},
		CrlDpRevocationEnabled: s.cfg.CRLDPRevocation,
	}
	if s.cfg.Notifications != nil {
		cin.NotificationSettings = s.notificationsWanted()
	}
	out, err := s.api.CreateTrustAnchor(ctx, cin)
	if err != nil {
		rep.Created, rep.Result = false, nil
		return fmt.Errorf("anchors: create trust anchor %q: %w", s.cfg.Name, err)
	}
	if out.TrustAnchor == nil || out.TrustAnchor.TrustAnchorArn == nil {
		return fmt.Errorf("anchors: create trust anchor %q: no ARN in the answer", s.cfg.Name)
	}
	rep.TrustAnchorARN = *out.TrustAnchor.TrustAnchorArn
	s.update(ctx, func(st *Status) {
		*st = Status{TrustAnchorARN: rep.TrustAnchorARN, Created: true, ProfileARN: s.cfg.ProfileARN, RoleARN: s.cfg.RoleARN}
	})
	s.log.Info("anchors: created trust anchor", "trust_anchor", rep.TrustAnchorARN)
	if !wantProfile {
		if s.cfg.ProfileARN == "" {
			s.log.Warn("anchors: no profile created: set anchors.role_arn to have lanyard create one")
		}
		rep.ProfileARN = s.cfg.ProfileARN
		return nil
	}
	in := &rolesanywhere.CreateProfileInput{
		Name:     aws.String(s.cfg.Name),
		RoleArns: []string{s.cfg.RoleARN},
		Enabled:  aws.Bool(true),
	}
	if s.cfg.Profile != nil {
		w := s.profileWanted()
		in.RoleArns, in.ManagedPolicyArns = w.RoleARNs, w.ManagedPolicyARNs
		in.DurationSeconds, in.AcceptRoleSessionName = aws.Int32(int32(w.DurationSeconds)), aws.Bool(w.AcceptRoleSessionName)
		if w.SessionPolicy != "" {
			in.SessionPolicy = aws.String(w.SessionPolicy)
		}
	}
	pout, err := s.api.CreateProfile(ctx, in)
	if err != nil {
		return fmt.Errorf("anchors: create profile %q for role %s: %w", s.cfg.Name, s.cfg.RoleARN, err)
	}
	if pout.Profile == nil || pout.Profile.ProfileArn == nil {
		return fmt.Errorf("anchors: create profile %q: no ARN in the answer", s.cfg.Name)
	}
	rep.ProfileARN, rep.ProfileCreated = *pout.Profile.ProfileArn, true
	s.update(ctx, func(st *Status) { st.ProfileARN = rep.ProfileARN })
	s.log.Info("anchors: created profile", "profile", rep.ProfileARN, "role", s.cfg.RoleARN)
	// The attribute mappings (and anything CreateProfile cannot set).
	var sub Report
	sub.ProfileARN = rep.ProfileARN
	return s.reconcileProfile(ctx, &sub, false)
}
