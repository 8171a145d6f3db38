package hostdir

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lanyard/lanyard/internal/clock"
)

// File and folder names inside a host folder.
const (
	CertFile      = "cert.pem"      // the leaf certificate
	ChainFile     = "chain.pem"     // the intermediates
	FullchainFile = "fullchain.pem" // cert.pem followed by chain.pem
	KeyFile       = "privkey.pem"   // the private key, 0600
	CurrentLink   = "current"       // symlink to versions/NNNNNN
	VersionsDir   = "versions"      // holds the version folders
	LockFile      = ".lock"         // flock(2) target for writers
)

// Defaults for the zero values of [Dir]'s fields.
const (
	DefaultKeep   = 5
	DefaultMinAge = 10 * time.Minute
)

// File and folder modes. DirMode applies only when Open creates DIR.
const (
	DirMode      os.FileMode = 0o700
	VersionsMode os.FileMode = 0o755
	VersionMode  os.FileMode = 0o755
	CertMode     os.FileMode = 0o644
	KeyMode      os.FileMode = 0o600
)

// linkNames are the Certbot-style names linked from DIR into current/.
var linkNames = []string{CertFile, ChainFile, FullchainFile, KeyFile}

// Errors callers branch on.
var (
	// ErrNotEnrolled means the folder has no `current` version yet.
	ErrNotEnrolled = errors.New("hostdir: not enrolled (no current version)")
	// ErrMismatch means the certificate's public key is not the private key's.
	ErrMismatch = errors.New("hostdir: certificate does not match the private key")
	// ErrInvalidMaterial means a certificate, chain or key does not parse.
	ErrInvalidMaterial = errors.New("hostdir: invalid certificate or key")
	// ErrUnsupportedKey means the key is neither ECDSA nor RSA.
	ErrUnsupportedKey = errors.New("hostdir: unsupported key type")
	// ErrKeyTypeChanged means a write would change the key family (ECDSA ↔
	// RSA) of the current version, which a running aws_signing_helper cannot
	// follow; set [Dir.AllowKeyTypeChange] to allow it.
	ErrKeyTypeChanged = errors.New("hostdir: key type would change")
	// ErrKeyRetired means a version's private key was deleted because the
	// version was superseded (see the package documentation, Pruning).
	ErrKeyRetired = errors.New("hostdir: the version is superseded and its private key was removed")
	// ErrInvalidVersion means a version name is not a version folder name
	// (six or more digits), or `current` does not point at one.
	ErrInvalidVersion = errors.New("hostdir: invalid version name")
)

// errLocked is returned by lockFile when another process holds the lock.
var errLocked = errors.New("hostdir: folder is locked by another writer")

// Dir is one host folder. Create it with [Open]; set the exported fields
// before the first [Dir.Write]. A Dir is safe for concurrent use; writers in
// different processes are serialised by a flock(2) on DIR/.lock.
type Dir struct {
	// Path is the host folder, absolute.
	Path string
	// Keep is how many versions, the current one included, are always kept;
	// zero or less means DefaultKeep.
	Keep int
	// MinAge is how long a version is kept after it stopped being current,
	// whatever Keep says; zero or less means DefaultMinAge.
	MinAge time.Duration
	// Now is the clock used to stamp and prune versions; nil means time.Now.
	Now func() time.Time
	// AllowKeyTypeChange lets Write replace an ECDSA version with an RSA one
	// or the reverse; by default that is refused with ErrKeyTypeChanged.
	AllowKeyTypeChange bool

	mu sync.Mutex
	// failpoint, when set (tests only), is called at named steps of Write and
	// makes Write fail there if it returns an error.
	failpoint func(step string) error
}

// Version is one complete version folder, loaded as a whole.
type Version struct {
	Name     string // e.g. "000042"
	Path     string // DIR/versions/000042
	Cert     *x509.Certificate
	Chain    []*x509.Certificate
	Key      crypto.Signer
	CertPEM  []byte
	ChainPEM []byte
	KeyPEM   []byte
}

// Open opens the host folder at path, creating it with mode 0700 (and its
// versions folder) if missing, and cleans up the leftovers of an interrupted
// write when no other process is writing (see the package documentation).
// It refuses (ErrUnsafe) a folder or versions folder that is a symlink, is
// not owned by the caller or is writable by group or others.
func Open(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("hostdir: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("hostdir: open %s: %w", path, err)
	}
	if err := os.MkdirAll(abs, DirMode); err != nil {
		return nil, fmt.Errorf("hostdir: create %s: %w", abs, err)
	}
	if err := checkFolder(abs); err != nil {
		return nil, fmt.Errorf("hostdir: open: %w", err)
	}
	d := &Dir{Path: abs}
	vdir := filepath.Join(abs, VersionsDir)
	if err := os.Mkdir(vdir, VersionsMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("hostdir: create %s: %w", vdir, err)
	}
	if err := checkFolder(vdir); err != nil {
		return nil, fmt.Errorf("hostdir: open: %w", err)
	}
	unlock, err := lockFile(filepath.Join(abs, LockFile), false)
	switch {
	case errors.Is(err, errLocked):
		return d, nil // a writer in another process is busy and cleans up after itself
	case err != nil:
		return nil, fmt.Errorf("hostdir: open %s: %w", abs, err)
	}
	defer unlock()
	if err := d.cleanup(); err != nil {
		return nil, fmt.Errorf("hostdir: open %s: clean up interrupted write: %w", abs, err)
	}
	_ = d.retireSuperseded("") // best effort: superseded keys a crash or a stopped agent left
	return d, nil
}

// OpenReadOnly opens an existing host folder for reading ([Dir.Current],
// [Dir.Load], [Dir.LoadCurrent], [Dir.Versions]): unlike [Open] it creates
// nothing, takes no lock and cleans nothing up, so readers (the credential
// process, exec-helper, doctor, an agent looking at its folder) never
// write and never wait for a writer. It refuses the folders Open refuses
// (ErrUnsafe). Do not call Write or Prune on the result.
func OpenReadOnly(path string) (*Dir, error) {
	if path == "" {
		return nil, errors.New("hostdir: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("hostdir: open %s: %w", path, err)
	}
	for _, p := range []string{abs, filepath.Join(abs, VersionsDir)} {
		if err := checkFolder(p); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotEnrolled, p, err)
		} else if err != nil {
			return nil, fmt.Errorf("hostdir: open: %w", err)
		}
	}
	return &Dir{Path: abs}, nil
}

// VersionPath returns the folder of a version: DIR/versions/NAME.
func (d *Dir) VersionPath(version string) string {
	return filepath.Join(d.Path, VersionsDir, version)
}

// Current resolves the `current` symlink once and returns the version name it
// points to, or ErrNotEnrolled if there is none.
func (d *Dir) Current() (string, error) {
	link := filepath.Join(d.Path, CurrentLink)
	target, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: %s", ErrNotEnrolled, d.Path)
	}
	if err != nil {
		return "", fmt.Errorf("hostdir: read %s: %w", link, err)
	}
	dir, name := filepath.Split(filepath.Clean(target))
	if filepath.Clean(dir) != VersionsDir || !validVersion(name) {
		return "", fmt.Errorf("%w: %s points to %q, not to %s/NNNNNN", ErrInvalidVersion, link, target, VersionsDir)
	}
	return name, nil
}

// Load reads the certificate, chain and key of one version folder and checks
// that they belong together.
func (d *Dir) Load(version string) (*Version, error) {
	if !validVersion(version) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidVersion, version)
	}
	p := d.VersionPath(version)
	if err := checkFolder(p); err != nil {
		return nil, fmt.Errorf("hostdir: load version %s: %w", version, err)
	}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(p, name))
		if err != nil {
			return nil, fmt.Errorf("hostdir: load version %s: %w", version, err)
		}
		return b, nil
	}
	certPEM, err := read(CertFile)
	if err != nil {
		return nil, err
	}
	chainPEM, err := read(ChainFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(KeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: version %s", ErrKeyRetired, version)
	}
	if err != nil {
		return nil, err
	}
	pm, err := parseMaterial(certPEM, chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("hostdir: load version %s: %w", version, err)
	}
	return &Version{
		Name: version, Path: p,
		Cert: pm.cert, Chain: pm.chain, Key: pm.key,
		CertPEM: certPEM, ChainPEM: chainPEM, KeyPEM: keyPEM,
	}, nil
}

// LoadCurrent resolves `current` once and loads that version, so the
// certificate, chain and key always come from one version.
func (d *Dir) LoadCurrent() (*Version, error) {
	v, err := d.Current()
	if err != nil {
		return nil, err
	}
	return d.Load(v)
}

// Versions lists the complete version folders, oldest first.
func (d *Dir) Versions() ([]string, error) {
	vdir := filepath.Join(d.Path, VersionsDir)
	entries, err := os.ReadDir(vdir)
	if err != nil {
		return nil, fmt.Errorf("hostdir: list %s: %w", vdir, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && validVersion(e.Name()) {
			out = append(out, e.Name())
		}
	}
	slices.SortFunc(out, func(a, b string) int { return cmpVersion(a, b) })
	return out, nil
}

// Write validates m, writes it as a new immutable version folder, swaps
// `current` to it atomically, makes sure the Certbot-style links exist and
// prunes old versions (best effort; see the package documentation).
//
// Nothing is written when m is invalid: ErrInvalidMaterial, ErrUnsupportedKey,
// ErrMismatch, or ErrKeyTypeChanged when the key family would change. If
// writing the folder or swapping `current` fails, the new folder is removed
// and the previous version stays current; version is then "". If a step after
// the swap fails (fsync of DIR, a Certbot-style link), the new version is
// current and returned together with the error.
func (d *Dir) Write(m Material) (version string, err error) {
	pm, err := parseMaterial(m.CertPEM, m.ChainPEM, m.KeyPEM)
	if err != nil {
		return "", fmt.Errorf("hostdir: write: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := lockFile(filepath.Join(d.Path, LockFile), true)
	if err != nil {
		return "", fmt.Errorf("hostdir: write %s: %w", d.Path, err)
	}
	defer unlock()

	prev, err := d.Current()
	switch {
	case errors.Is(err, ErrNotEnrolled):
		prev = ""
	case err != nil:
		return "", fmt.Errorf("hostdir: write: %w", err)
	}
	if prev != "" && !d.AllowKeyTypeChange {
		if old, err := d.Load(prev); err == nil {
			if err := CheckKeyTypeChange(KeyTypeOf(old.Key), KeyTypeOf(pm.key), false); err != nil {
				return "", fmt.Errorf("version %s: %w", prev, err)
			}
		}
	}

	name, err := d.nextVersion(prev)
	if err != nil {
		return "", err
	}
	if err := d.writeVersion(name, m); err != nil {
		return "", err
	}
	vpath := d.VersionPath(name)
	err = d.fail("swap")
	if err == nil {
		err = replaceSymlink(filepath.Join(VersionsDir, name), filepath.Join(d.Path, CurrentLink))
	}
	if err != nil {
		_ = os.RemoveAll(vpath)
		return "", fmt.Errorf("hostdir: write: swap %s to version %s (version %s stays current): %w", CurrentLink, name, orNone(prev), err)
	}
	// From here on the new version is current.
	now := d.now()
	_ = os.Chtimes(vpath, now, now) // records when the previous version stopped being current
	var errs []error
	if err := syncDir(d.Path); err != nil {
		errs = append(errs, err)
	}
	if err := d.ensureLinks(); err != nil {
		errs = append(errs, err)
	}
	_ = d.prune(prev)
	if len(errs) > 0 {
		return name, fmt.Errorf("hostdir: write: version %s is current, but: %w", name, errors.Join(errs...))
	}
	return name, nil
}

// Prune deletes old versions now, under the rule in the package
// documentation. Write already prunes; Prune is for callers that want it
// without writing (an agent at start-up, for example).
func (d *Dir) Prune() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	unlock, err := lockFile(filepath.Join(d.Path, LockFile), true)
	if err != nil {
		return fmt.Errorf("hostdir: prune %s: %w", d.Path, err)
	}
	defer unlock()
	return d.prune("")
}

// writeVersion writes m into versions/.tmp-XXXX, fsyncs the files and the
// folder, and renames it to versions/name. On error nothing is left behind.
func (d *Dir) writeVersion(name string, m Material) error {
	vdir := filepath.Join(d.Path, VersionsDir)
	tmp, err := os.MkdirTemp(vdir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("hostdir: write version %s: create temporary folder: %w", name, err)
	}
	final := filepath.Join(vdir, name)
	renamed := false
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
			if renamed {
				_ = os.RemoveAll(final)
			}
		}
	}()
	fullchain := make([]byte, 0, len(m.CertPEM)+len(m.ChainPEM)+1)
	fullchain = append(fullchain, m.CertPEM...)
	if len(fullchain) > 0 && fullchain[len(fullchain)-1] != '\n' && len(m.ChainPEM) > 0 {
		fullchain = append(fullchain, '\n')
	}
	fullchain = append(fullchain, m.ChainPEM...)
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, m.KeyPEM, KeyMode},
		{CertFile, m.CertPEM, CertMode},
		{ChainFile, m.ChainPEM, CertMode},
		{FullchainFile, fullchain, CertMode},
	}
	for _, f := range files {
		err := d.fail("write-file")
		if err == nil {
			err = writeNewFile(filepath.Join(tmp, f.name), f.data, f.mode)
		}
		if err != nil {
			return fmt.Errorf("hostdir: write version %s: %w", name, err)
		}
	}
	if err := os.Chmod(tmp, VersionMode); err != nil {
		return fmt.Errorf("hostdir: write version %s: %w", name, err)
	}
	if err := syncDir(tmp); err != nil {
		return fmt.Errorf("hostdir: write version %s: %w", name, err)
	}
	err = d.fail("rename-version")
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		return fmt.Errorf("hostdir: write version %s: rename into place: %w", name, err)
	}
	renamed = true
	if err := syncDir(vdir); err != nil {
		return fmt.Errorf("hostdir: write version %s: %w", name, err)
	}
	ok = true
	return nil
}

// nextVersion returns the name after the highest existing version (and after
// current, should current point past every folder).
func (d *Dir) nextVersion(current string) (string, error) {
	vs, err := d.Versions()
	if err != nil {
		return "", fmt.Errorf("hostdir: write: %w", err)
	}
	var highest uint64
	for _, v := range append(vs, current) {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > highest {
			highest = n
		}
	}
	return fmt.Sprintf("%06d", highest+1), nil
}

// ensureLinks makes DIR/{cert,chain,fullchain,privkey}.pem relative symlinks
// to current/…, replacing whatever else is there (except a folder).
func (d *Dir) ensureLinks() error {
	var errs []error
	for _, name := range linkNames {
		link := filepath.Join(d.Path, name)
		target := filepath.Join(CurrentLink, name)
		if got, err := os.Readlink(link); err == nil && got == target {
			continue
		}
		if err := replaceSymlink(target, link); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := syncDir(d.Path); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hostdir: Certbot-style links: %w", err)
	}
	return nil
}

// cleanup removes what an interrupted Write leaves behind. The caller holds
// the lock.
func (d *Dir) cleanup() error {
	var errs []error
	vdir := filepath.Join(d.Path, VersionsDir)
	entries, err := os.ReadDir(vdir)
	if err != nil {
		return fmt.Errorf("list %s: %w", vdir, err)
	}
	cur, curErr := d.Current()
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
		case curErr == nil && e.IsDir() && validVersion(name) && cmpVersion(name, cur) > 0:
			// Complete but never swapped in: nobody can have read it through current.
		default:
			continue
		}
		if err := os.RemoveAll(filepath.Join(vdir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	entries, err = os.ReadDir(d.Path)
	if err != nil {
		return fmt.Errorf("list %s: %w", d.Path, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.RemoveAll(filepath.Join(d.Path, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if curErr == nil {
		if _, err := os.Stat(d.VersionPath(cur)); err == nil {
			if err := d.ensureLinks(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := syncDir(vdir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// prune deletes versions under the rule in the package documentation, never
// touching the current version or protect. The caller holds the lock.
func (d *Dir) prune(protect string) error {
	cur, err := d.Current()
	if err != nil {
		return err // without a current version nothing is provably stale
	}
	vs, err := d.Versions()
	if err != nil {
		return err
	}
	keep := d.Keep
	if keep <= 0 {
		keep = DefaultKeep
	}
	vdir := filepath.Join(d.Path, VersionsDir)
	var errs []error
	n, err := d.retiredCount(vs, cur)
	if err != nil {
		errs = append(errs, err)
	}
	for i, v := range vs[:n] {
		if i >= len(vs)-keep || v == protect {
			break // vs is sorted: everything from here on is kept
		}
		if err := os.RemoveAll(filepath.Join(vdir, v)); err != nil {
			errs = append(errs, fmt.Errorf("prune version %s: %w", v, err))
		}
	}
	if err := d.retireSuperseded(protect); err != nil {
		errs = append(errs, err)
	}
	if err := syncDir(vdir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// retiredCount is how many of the oldest versions of vs (sorted) stopped
// being current (cur) at least MinAge ago. A version stopped being current
// when its successor became current, so the successor folder's age is
// that time; versions after the first one too young retired even later.
// A successor that cannot be read ends the count with its error.
func (d *Dir) retiredCount(vs []string, cur string) (int, error) {
	minAge := d.MinAge
	if minAge <= 0 {
		minAge = DefaultMinAge
	}
	now := d.now()
	vdir := filepath.Join(d.Path, VersionsDir)
	for i, v := range vs {
		if v == cur || cmpVersion(v, cur) > 0 {
			return i, nil
		}
		fi, err := os.Stat(filepath.Join(vdir, vs[i+1]))
		if err != nil {
			return i, err
		}
		if now.Sub(fi.ModTime()) < minAge {
			return i, nil
		}
	}
	return len(vs), nil
}

// retireSuperseded deletes the private key of every version older than
// current, other than protect, that stopped being current at least MinAge
// ago: a superseded key can no longer renew anything (the CA refuses a
// certificate whose successor exists) and only waits to be stolen, while
// its certificates stay for history until the version is pruned. The
// caller holds the lock.
func (d *Dir) retireSuperseded(protect string) error {
	cur, err := d.Current()
	if err != nil {
		return err
	}
	vs, err := d.Versions()
	if err != nil {
		return err
	}
	vdir := filepath.Join(d.Path, VersionsDir)
	var errs []error
	n, err := d.retiredCount(vs, cur)
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range vs[:n] {
		if v == protect {
			continue
		}
		if err := os.Remove(filepath.Join(vdir, v, KeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("retire the key of version %s: %w", v, err))
		}
	}
	return errors.Join(errs...)
}

func (d *Dir) now() time.Time { return clock.Or(d.Now)() }

func (d *Dir) fail(step string) error {
	if d.failpoint == nil {
		return nil
	}
	return d.failpoint(step)
}

// validVersion reports whether name is a version folder name: six or more
// ASCII digits.
func validVersion(name string) bool {
	if len(name) < 6 || len(name) > 20 {
		return false
	}
	for _, c := range []byte(name) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// cmpVersion orders version names numerically.
func cmpVersion(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return strings.Compare(a, b)
}

func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
