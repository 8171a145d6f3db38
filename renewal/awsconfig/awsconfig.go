// Package awsconfig writes and reads one profile of the AWS shared config
// file (AWS_CONFIG_FILE or ~/.aws/config) as `lanyard enroll` and the agent
// need it: a one-line credential_process that hands the host's certificate to
// aws_signing_helper or to lanyard's own credential process.
//
// WriteProfile replaces only the named profile's section and leaves every
// other byte of the file as it was (other profiles, comments, blank lines,
// line endings). gopkg.in/ini.v1 cannot do that (saving reformats the whole
// file), so the edit is a small line-based section replacer; ini.v1 is used to
// refuse files that do not parse, and to read the result back and check it
// before anything is written. Section headers are recognised the way the AWS
// SDK for Go v2 recognises them, and also the way ini.v1 does, so that no
// second copy of the profile survives for either.
//
// The command-line builders (ExecHelperArgs, HelperCredentialProcessArgs,
// BuiltinArgs) give the race-free hand-off forms of the design: each reads one
// whole version folder of a renewal/hostdir folder. CommandLine turns them
// into the one line credential_process takes.
package awsconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"

	"github.com/lanyard/lanyard/internal/atomicfile"
)

// Keys this package writes.
const (
	KeyCredentialProcess = "credential_process"
	KeyRegion            = "region"
)

// Modes for a config file and folder this package creates. An existing file
// keeps its mode.
const (
	FileMode   os.FileMode = 0o600
	FolderMode os.FileMode = 0o700
)

// Errors callers branch on.
var (
	// ErrMalformed means the existing config file does not parse; it is left
	// untouched.
	ErrMalformed = errors.New("awsconfig: config file does not parse")
	// ErrInvalidProfile means a profile name, key or value cannot be written
	// safely (a newline, an inline comment marker, surrounding quotes…).
	ErrInvalidProfile = errors.New("awsconfig: invalid profile")
	// ErrProfileNotFound means the file has no section for the profile.
	ErrProfileNotFound = errors.New("awsconfig: profile not found")
	// ErrUnsafeEdit means the edited file would not read back as written (an
	// unusual existing file); nothing is written.
	ErrUnsafeEdit = errors.New("awsconfig: edit would not read back as written")
	// ErrMissingARN means a HelperArgs lacks a required ARN.
	ErrMissingARN = errors.New("awsconfig: missing Roles Anywhere ARN")
)

// Profile is one profile of the AWS config file.
type Profile struct {
	// Name is the profile name: "default" is written as [default], any
	// other NAME as [profile NAME].
	Name string
	// CredentialProcess is the one-line command (see CommandLine).
	CredentialProcess string
	// Region, when set, is written as region.
	Region string
	// Extra holds further keys, written sorted by key after the two above.
	Extra map[string]string
}

// Path returns the AWS config file path: $AWS_CONFIG_FILE if set, else
// ~/.aws/config.
func Path() string {
	if p := os.Getenv("AWS_CONFIG_FILE"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "~"
	}
	return filepath.Join(home, ".aws", "config")
}

// loadOptions read the file the way the AWS SDK for Go v2 does where ini.v1
// can be told to: inline comments only after a blank, no backslash
// continuation, nested values (s3 =, then indented keys) allowed.
var loadOptions = ini.LoadOptions{
	SpaceBeforeInlineComment: true,
	IgnoreContinuation:       true,
	AllowNestedValues:        true,
}

// WriteProfile writes p into the config file at path, replacing that
// profile's section (every copy of it, the first in place) and leaving the
// rest of the file byte for byte. A missing file is created 0600 and a
// missing parent folder 0700; the write is atomic (temporary file, fsync,
// rename). If path is a symlink, its target is rewritten. A file that does not
// parse is refused with ErrMalformed and left untouched.
func WriteProfile(path string, p Profile) error {
	lines, err := p.lines()
	if err != nil {
		return err
	}
	target, err := resolve(path)
	if err != nil {
		return err
	}
	mode := FileMode
	old, err := os.ReadFile(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
		if err := os.MkdirAll(filepath.Dir(target), FolderMode); err != nil {
			return fmt.Errorf("awsconfig: create folder for %s: %w", target, err)
		}
	case err != nil:
		return fmt.Errorf("awsconfig: read %s: %w", target, err)
	default:
		if fi, err := os.Stat(target); err == nil {
			mode = fi.Mode().Perm()
		}
		if _, err := ini.LoadSources(loadOptions, old); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, target, err)
		}
	}
	out := replaceSection(old, p.sectionName(), lines)
	if err := checkEdit(out, p); err != nil {
		return fmt.Errorf("awsconfig: write profile %q to %s: %w", p.Name, target, err)
	}
	if err := atomicfile.Write(target, out, mode); err != nil {
		return fmt.Errorf("awsconfig: %w", err)
	}
	return nil
}

// ReadProfile reads the named profile from the config file at path with
// ini.v1. For "default", a [profile default] section wins over [default], as
// in the AWS SDKs.
func ReadProfile(path, name string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("awsconfig: read %s: %w", path, err)
	}
	p, err := parseProfile(data, name)
	if err != nil {
		return nil, fmt.Errorf("awsconfig: %s: %w", path, err)
	}
	return p, nil
}

// parseProfile finds profile name in data with ini.v1, normalising section
// names the way the AWS SDK does ("[ profile  x ]" is "profile x").
func parseProfile(data []byte, name string) (*Profile, error) {
	f, err := ini.LoadSources(loadOptions, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	want := []string{"profile " + name}
	if name == "default" {
		want = []string{"profile default", "default"}
	}
	for _, w := range want {
		// Duplicate headers that normalise alike are merged, later keys winning.
		var found bool
		p := &Profile{Name: name}
		for _, s := range f.Sections() {
			if normalizeSection(s.Name()) != w {
				continue
			}
			found = true
			for _, k := range s.Keys() {
				switch key := strings.ToLower(k.Name()); key {
				case KeyCredentialProcess:
					p.CredentialProcess = k.Value()
				case KeyRegion:
					p.Region = k.Value()
				default:
					if p.Extra == nil {
						p.Extra = map[string]string{}
					}
					p.Extra[key] = k.Value()
				}
			}
		}
		if found {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrProfileNotFound, name)
}

// resolve follows symlinks at path (a dotfile manager's link stays a link);
// a missing file resolves to itself.
func resolve(path string) (string, error) {
	if path == "" {
		return "", errors.New("awsconfig: empty config file path")
	}
	t, err := filepath.EvalSymlinks(path)
	switch {
	case err == nil:
		return t, nil
	case errors.Is(err, fs.ErrNotExist):
		if l, lerr := os.Readlink(path); lerr == nil { // dangling link: create its target
			if !filepath.IsAbs(l) {
				l = filepath.Join(filepath.Dir(path), l)
			}
			return l, nil
		}
		return path, nil
	default:
		return "", fmt.Errorf("awsconfig: resolve %s: %w", path, err)
	}
}

// sectionName is the SDK's name of p's section: "default" or "profile NAME".
func (p Profile) sectionName() string {
	if p.Name == "default" {
		return "default"
	}
	return "profile " + p.Name
}

// lines validates p and renders its section, header first, each line ending
// in "\n" (the Go SDK splits lines on "\n" only, so "\r\n" would leave "\r"
// in values).
func (p Profile) lines() ([]string, error) {
	if err := checkName(p.Name); err != nil {
		return nil, err
	}
	out := []string{"[" + p.sectionName() + "]\n"}
	add := func(k, v string) error {
		if msg := valueProblem(v); msg != "" {
			return fmt.Errorf("%w: profile %q: %s %s", ErrInvalidProfile, p.Name, k, msg)
		}
		out = append(out, k+" = "+v+"\n")
		return nil
	}
	if p.Region != "" {
		if err := add(KeyRegion, p.Region); err != nil {
			return nil, err
		}
	}
	if p.CredentialProcess != "" {
		if err := add(KeyCredentialProcess, p.CredentialProcess); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.Extra)) {
		lk := strings.ToLower(k)
		if lk == KeyRegion || lk == KeyCredentialProcess || !validKey(k) || k != lk {
			return nil, fmt.Errorf("%w: profile %q: extra key %q (want lower-case letters, digits, _ . -, and not %s or %s)",
				ErrInvalidProfile, p.Name, k, KeyRegion, KeyCredentialProcess)
		}
		if err := add(k, p.Extra[k]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty profile name", ErrInvalidProfile)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("[]#;'\"`\\=:", r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%w: profile name %q: character %q not allowed", ErrInvalidProfile, name, r)
		}
	}
	return nil
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// valueProblem says why v cannot be written as a one-line value that the Go
// SDK, botocore and ini.v1 all read back unchanged, or "" if it can.
func valueProblem(v string) string {
	switch {
	case v == "":
		return "is empty"
	case strings.ContainsAny(v, "\n\r\x00"):
		return "holds a line break or NUL (config values are one line)"
	case strings.TrimSpace(v) != v:
		return "starts or ends with white space"
	case strings.Contains(v, " #"), strings.Contains(v, " ;"), strings.Contains(v, "\t#"), strings.Contains(v, "\t;"):
		return "holds a blank followed by # or ; (an inline comment to the AWS SDK)"
	case v[0] == '\'' && v[len(v)-1] == '\'', v[0] == '"' && v[len(v)-1] == '"':
		return "starts and ends with the same quote (the AWS SDK strips them)"
	case v[0] == '`', strings.HasPrefix(v, `"""`):
		return "starts with a multi-line quote"
	case v[0] == '#' || v[0] == ';':
		return "starts with a comment character"
	case v[len(v)-1] == '\\':
		return "ends with a backslash (a line continuation to some parsers)"
	}
	return ""
}

// header describes a line that starts a section for the AWS SDK or for
// ini.v1; names holds the normalised section names it stands for.
func header(line string) (names []string, ok bool) {
	// The AWS SDK for Go v2 (internal/ini): comment lines first, then a
	// bracketed line once comments are cut.
	trimmed := strings.TrimLeft(line, " \t")
	if !strings.HasPrefix(trimmed, "#") && !strings.HasPrefix(trimmed, ";") && strings.TrimSpace(line) != "" {
		s := strings.TrimSpace(cutAny(line, "#", ";"))
		if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
			names = append(names, normalizeSection(s[1:len(s)-1]))
		}
	}
	// ini.v1: after leading white space, '[' up to the last ']'.
	t := strings.TrimLeftFunc(line, unicode.IsSpace)
	if strings.HasPrefix(t, "[") {
		if i := strings.LastIndexByte(t, ']'); i > 0 {
			names = append(names, normalizeSection(t[1:i]))
		} else {
			names = append(names, "") // unclosed: ini.v1 refuses the file anyway
		}
	}
	return names, len(names) > 0
}

func cutAny(s string, seps ...string) string {
	for _, sep := range seps {
		s, _, _ = strings.Cut(s, sep)
	}
	return s
}

// normalizeSection turns a bracketed name into the SDK's section name: the
// first word, one space, and the rest after the blanks that follow it.
func normalizeSection(s string) string {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s
	}
	return s[:i] + " " + strings.TrimLeft(s[i:], " \t")
}

// isFiller reports whether a line is blank or a comment (such lines at the
// end of a section are kept: they usually introduce the next one).
func isFiller(line string) bool {
	t := strings.TrimLeft(line, " \t\r\n")
	return t == "" || t[0] == '#' || t[0] == ';'
}

// splitLines splits data after each "\n", keeping the line endings.
func splitLines(data []byte) []string {
	var out []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, string(data))
			break
		}
		out = append(out, string(data[:i+1]))
		data = data[i+1:]
	}
	return out
}

// replaceSection returns data with every section named name replaced: the
// first by lines, the others removed. A section runs from its header to its
// last line that is neither blank nor a comment. Without such a section,
// lines are appended after a blank line.
func replaceSection(data []byte, name string, lines []string) []byte {
	in := splitLines(data)
	matches := func(l string) bool {
		names, _ := header(l)
		for _, n := range names {
			if n == name || name == "default" && n == "profile default" {
				return true
			}
		}
		return false
	}
	var out bytes.Buffer
	written := false
	for i := 0; i < len(in); {
		if !matches(in[i]) {
			out.WriteString(in[i])
			i++
			continue
		}
		end := i + 1 // one past the section's header and body
		for j := i + 1; j < len(in); j++ {
			if _, ok := header(in[j]); ok {
				break
			}
			if !isFiller(in[j]) {
				end = j + 1
			}
		}
		if !written {
			if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
				out.WriteByte('\n')
			}
			for _, l := range lines {
				out.WriteString(l)
			}
			written = true
		}
		i = end
	}
	if !written {
		b := out.Bytes()
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n")) {
			out.WriteByte('\n')
			b = out.Bytes()
		}
		if len(b) > 0 && !bytes.HasSuffix(b, []byte("\n\n")) && !bytes.HasSuffix(b, []byte("\n\r\n")) {
			out.WriteByte('\n')
		}
		for _, l := range lines {
			out.WriteString(l)
		}
	}
	return out.Bytes()
}

// checkEdit proves that out holds p exactly once and reads back as written,
// for the SDK's header rule, ini.v1's, and ini.v1's values.
func checkEdit(out []byte, p Profile) error {
	n := 0
	for _, l := range splitLines(out) {
		names, _ := header(l)
		for _, h := range names {
			if h == p.sectionName() || p.Name == "default" && h == "profile default" {
				n++
				break
			}
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: profile header found %d times", ErrUnsafeEdit, n)
	}
	got, err := parseProfile(out, p.Name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeEdit, err)
	}
	if got.CredentialProcess != p.CredentialProcess || got.Region != p.Region || !maps.Equal(got.Extra, p.Extra) {
		return fmt.Errorf("%w: profile reads back differently", ErrUnsafeEdit)
	}
	return nil
}
