package awsconfig

import (
	"path/filepath"
	"strings"
)

// CommandLine joins args into one shell command line that `sh -c` (how the
// AWS SDKs for Go, Java and others run credential_process on Unix) and
// Python's shlex.split (how botocore and the AWS CLI split it) both turn back
// into exactly args.
//
// Arguments made only of safe characters (letters, digits, bytes ≥ 0x80 and
// - _ . / : @ % + , and = outside the first word) are left bare; others are
// single-quoted (a quote inside becomes: close quote, backslash, quote,
// reopen quote). The result is also kept safe for the
// config file parsers: it never contains a blank followed by # or ; (an
// inline comment to the Go SDK) and never both starts and ends with the same
// quote character (the Go SDK would strip them); when single quotes would
// cause either, every unsafe character is backslash-escaped instead.
//
// An argument holding a newline cannot be written on one line: the result
// then contains it, and WriteProfile refuses such a line.
func CommandLine(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = singleQuote(a, i == 0)
	}
	line := strings.Join(quoted, " ")
	if valueProblem(line) == "" {
		return line
	}
	for i, a := range args {
		quoted[i] = backslashQuote(a, i == 0)
	}
	return strings.Join(quoted, " ")
}

// safeByte reports whether c needs no quoting in a shell word.
func safeByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	case c == '=':
		return !first // NAME=value as the first word is an assignment
	}
	return strings.IndexByte("-_./:@%+,", c) >= 0
}

func needsQuoting(s string, first bool) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		if !safeByte(s[i], first) {
			return true
		}
	}
	return false
}

func singleQuote(s string, first bool) string {
	if !needsQuoting(s, first) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func backslashQuote(s string, first bool) string {
	if !needsQuoting(s, first) {
		return s
	}
	if s == "" {
		return `""`
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case safeByte(c, first):
			b.WriteByte(c)
		case c == '\n':
			b.WriteString("'\n'") // a backslash-newline would vanish
		case c == '\\':
			b.WriteString(`"\\"`) // never let the line end with a backslash
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// HelperArgs are the Roles Anywhere parameters handed to aws_signing_helper
// or to lanyard's own credential process. Empty fields are left out.
type HelperArgs struct {
	TrustAnchorARN  string
	ProfileARN      string
	RoleARN         string
	Region          string
	Endpoint        string
	SessionDuration string // seconds, e.g. "3600"
	RoleSessionName string
}

// Flags returns the helper flags for h, in a fixed order:
// --trust-anchor-arn, --profile-arn, --role-arn, --region, --endpoint,
// --session-duration, --role-session-name; each only when set. They are the
// flags aws_signing_helper and `lanyard credential-process` share.
func (h HelperArgs) Flags() []string {
	var out []string
	add := func(flag, v string) {
		if v != "" {
			out = append(out, flag, v)
		}
	}
	add("--trust-anchor-arn", h.TrustAnchorARN)
	add("--profile-arn", h.ProfileARN)
	add("--role-arn", h.RoleARN)
	add("--region", h.Region)
	add("--endpoint", h.Endpoint)
	add("--session-duration", h.SessionDuration)
	add("--role-session-name", h.RoleSessionName)
	return out
}

// Validate reports ErrMissingARN when one of the three ARNs is empty.
func (h HelperArgs) Validate() error {
	var missing []string
	for _, f := range []struct{ flag, v string }{
		{"--trust-anchor-arn", h.TrustAnchorARN},
		{"--profile-arn", h.ProfileARN},
		{"--role-arn", h.RoleARN},
	} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return &missingError{flags: missing}
	}
	return nil
}

type missingError struct{ flags []string }

func (e *missingError) Error() string {
	return ErrMissingARN.Error() + ": " + strings.Join(e.flags, ", ")
}

func (e *missingError) Unwrap() error { return ErrMissingARN }

// ExecHelperArgs is the race-free hand-off to the real helper:
//
//	LANYARD exec-helper --dir DIR -- <h.Flags()>
//
// `lanyard exec-helper` resolves DIR/current once and execs
// HelperCredentialProcessArgs for that version folder. lanyardBin should be
// an absolute path: credential_process runs with the calling program's PATH.
func ExecHelperArgs(lanyardBin, dir string, h HelperArgs) []string {
	out := []string{lanyardBin, "exec-helper", "--dir", dir, "--"}
	return append(out, h.Flags()...)
}

// HelperCredentialProcessArgs is the real aws_signing_helper invocation for
// one resolved version folder:
//
//	HELPER credential-process --certificate V/cert.pem --private-key V/privkey.pem
//	  --intermediates V/chain.pem <h.Flags()>
func HelperCredentialProcessArgs(helperBin, versionPath string, h HelperArgs) []string {
	out := []string{helperBin, "credential-process",
		"--certificate", filepath.Join(versionPath, "cert.pem"),
		"--private-key", filepath.Join(versionPath, "privkey.pem"),
		"--intermediates", filepath.Join(versionPath, "chain.pem"),
	}
	return append(out, h.Flags()...)
}

// BuiltinArgs is lanyard's own credential process, which opens one version
// folder and signs CreateSession itself:
//
//	LANYARD credential-process --dir DIR <h.Flags()>
func BuiltinArgs(lanyardBin, dir string, h HelperArgs) []string {
	out := []string{lanyardBin, "credential-process", "--dir", dir}
	return append(out, h.Flags()...)
}
