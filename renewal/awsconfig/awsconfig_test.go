package awsconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"gopkg.in/ini.v1"
)

var testHelper = HelperArgs{
	TrustAnchorARN: "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/4579702c-a3d2-4aaf-a4e7-1b2b3d4e5f60",
	ProfileARN:     "arn:aws:rolesanywhere:us-east-1:123456789012:profile/6f4ba0e5-3b5a-4b0c-8c1c-0123456789ab",
	RoleARN:        "arn:aws:iam::123456789012:role/covalent-host",
	Region:         "us-east-1",
	Endpoint:       "https://127.0.0.1:9443",
}

func covalentProfile(dir string) Profile {
	return Profile{
		Name:              "covalent",
		CredentialProcess: CommandLine(ExecHelperArgs("/usr/local/bin/lanyard", dir, testHelper)),
		Region:            "us-east-1",
	}
}

// sdkProfile loads name from path with the AWS SDK for Go v2's shared config
// loader, the way an SDK user's program would.
func sdkProfile(t *testing.T, path, name string) config.SharedConfig {
	t.Helper()
	sc, err := config.LoadSharedConfigProfile(context.Background(), name, func(o *config.LoadSharedConfigOptions) {
		o.ConfigFiles = []string{path}
		o.CredentialsFiles = []string{}
	})
	if err != nil {
		t.Fatalf("AWS SDK LoadSharedConfigProfile(%q): %v", name, err)
	}
	return sc
}

const otherContent = `# AWS config for alice — hand-edited, keep my comments
[default]
region=eu-west-1
output = json   ; trailing comment

; the work account
[profile work]
sso_session = corp
sso_account_id = 111122223333
sso_role_name  =  ReadOnly
s3 =
  max_concurrent_requests = 20
  multipart_threshold = 64MB

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
`

func TestWriteProfile(t *testing.T) {
	tests := []struct {
		name     string
		existing *string // nil: no file
		profile  func(dir string) Profile
		// keep lists substrings of the original that must survive verbatim;
		// "ALL-BUT-SECTION" means every original byte outside the replaced section.
		wantPrefix string
		header     string
	}{
		{name: "new file", existing: nil, profile: covalentProfile, header: "[profile covalent]"},
		{name: "empty file", existing: ptr(""), profile: covalentProfile, header: "[profile covalent]"},
		{name: "append to other profiles", existing: ptr(otherContent), profile: covalentProfile, wantPrefix: otherContent + "\n", header: "[profile covalent]"},
		{name: "no final newline", existing: ptr("[profile a]\nregion = x"), profile: covalentProfile, wantPrefix: "[profile a]\nregion = x\n\n", header: "[profile covalent]"},
		{name: "default profile", existing: ptr("[profile a]\nregion = x\n"), profile: func(dir string) Profile {
			p := covalentProfile(dir)
			p.Name = "default"
			return p
		}, wantPrefix: "[profile a]\nregion = x\n\n", header: "[default]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "home", ".aws", "config")
			if tc.existing != nil {
				must(t, os.MkdirAll(filepath.Dir(path), 0o755))
				must(t, os.WriteFile(path, []byte(*tc.existing), 0o644))
			}
			p := tc.profile("/etc/covalent/pki")
			must(t, WriteProfile(path, p))

			got, err := os.ReadFile(path)
			must(t, err)
			if !bytes.HasPrefix(got, []byte(tc.wantPrefix)) {
				t.Errorf("other content changed:\n%s", got)
			}
			if n := strings.Count(string(got), tc.header); n != 1 {
				t.Errorf("%s appears %d times:\n%s", tc.header, n, got)
			}
			// One line, exactly the command.
			if !strings.Contains(string(got), "\ncredential_process = "+p.CredentialProcess+"\n") {
				t.Errorf("credential_process is not on one line:\n%s", got)
			}
			// Modes: new file 0600 in a new 0700 folder; an existing file keeps its mode.
			fi, _ := os.Stat(path)
			wantMode := FileMode
			if tc.existing != nil {
				wantMode = 0o644
			} else if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != FolderMode {
				t.Errorf("folder mode = %v, want %v", di.Mode().Perm(), FolderMode)
			}
			if fi.Mode().Perm() != wantMode {
				t.Errorf("file mode = %v, want %v", fi.Mode().Perm(), wantMode)
			}
			// ini.v1 parses it, ReadProfile returns it, the AWS SDK loads it.
			if _, err := ini.Load(path); err != nil {
				t.Errorf("ini.v1 cannot parse the result: %v", err)
			}
			rp, err := ReadProfile(path, p.Name)
			if err != nil || rp.CredentialProcess != p.CredentialProcess || rp.Region != p.Region {
				t.Errorf("ReadProfile = %+v, %v", rp, err)
			}
			sc := sdkProfile(t, path, p.Name)
			if sc.CredentialProcess != p.CredentialProcess || sc.Region != p.Region {
				t.Errorf("AWS SDK sees credential_process %q region %q", sc.CredentialProcess, sc.Region)
			}
			// Other profiles still load in the SDK.
			if tc.existing != nil && *tc.existing == otherContent {
				if sc := sdkProfile(t, path, "work"); sc.SSOAccountID != "111122223333" {
					t.Errorf("profile work damaged: %+v", sc)
				}
			}
		})
	}
}

// TestRewriteReplacesOnlyThatProfile: the profile sits between others; a
// re-run replaces its section and every other byte stays as it was.
func TestRewriteReplacesOnlyThatProfile(t *testing.T) {
	before := "# top comment\n[profile a]\nregion = a-1 # inline\n\n"
	section := "[profile covalent]\nregion = old\ncredential_process = /old/helper credential-process\n; a comment inside\nfoo = bar\n"
	after := "\n# introduces b\n[profile b]\r\nregion = b-1\r\n[default]\nregion = d\n"
	tests := []struct {
		name     string
		content  string
		wantRest string
	}{
		{"middle", before + section + after, before + "%s" + after},
		{"last, no final newline", before + strings.TrimSuffix(section, "\n"), before + "%s"},
		{"first", section + after, "%s" + after},
		{"duplicate sections both go", before + section + after + section, before + "%s" + after},
		{"spaced header", before + "[ profile   covalent ] # c\nregion = x\n" + after, before + "%s" + after},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config")
			must(t, os.WriteFile(path, []byte(tc.content), 0o600))
			p := covalentProfile("/etc/covalent/pki")
			for range 2 { // re-running gives the same file
				must(t, WriteProfile(path, p))
			}
			got, _ := os.ReadFile(path)
			lines, _ := p.lines()
			want := strings.Replace(tc.wantRest, "%s", strings.Join(lines, ""), 1)
			if string(got) != want {
				t.Errorf("file =\n%q\nwant\n%q", got, want)
			}
			if sc := sdkProfile(t, path, "covalent"); sc.CredentialProcess != p.CredentialProcess {
				t.Errorf("SDK credential_process = %q", sc.CredentialProcess)
			}
			if !strings.Contains(tc.content, "[profile a]") {
				return
			}
			if sc := sdkProfile(t, path, "a"); sc.Region != "a-1" {
				t.Errorf("profile a region = %q", sc.Region)
			}
		})
	}
}

func TestDefaultReplacesBothSpellings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	must(t, os.WriteFile(path, []byte("[default]\nregion = a\n\n[profile x]\nregion = x\n\n[profile default]\nregion = b\n"), 0o600))
	p := Profile{Name: "default", Region: "us-east-2", CredentialProcess: "/bin/true"}
	must(t, WriteProfile(path, p))
	got, _ := os.ReadFile(path)
	want := "[default]\nregion = us-east-2\ncredential_process = /bin/true\n\n[profile x]\nregion = x\n\n"
	if string(got) != want {
		t.Errorf("file =\n%q\nwant\n%q", got, want)
	}
	if sc := sdkProfile(t, path, "default"); sc.Region != "us-east-2" {
		t.Errorf("SDK default region = %q", sc.Region)
	}
}

func TestWriteProfileRefuses(t *testing.T) {
	garbage := "this is not an ini file\n[profile ok]\nregion = x\n"
	tests := []struct {
		name     string
		existing string
		profile  Profile
		want     error
	}{
		{"garbage file", garbage, covalentProfile("/d"), ErrMalformed},
		{"unclosed section", "[profile a\nregion = x\n", covalentProfile("/d"), ErrMalformed},
		{"binary", "\x00\x01\x02\xff\n", covalentProfile("/d"), ErrMalformed},
		{"empty name", "", Profile{CredentialProcess: "x"}, ErrInvalidProfile},
		{"name with space", "", Profile{Name: "a b", CredentialProcess: "x"}, ErrInvalidProfile},
		{"name with bracket", "", Profile{Name: "a]", CredentialProcess: "x"}, ErrInvalidProfile},
		{"newline in command", "", Profile{Name: "a", CredentialProcess: "x\ny"}, ErrInvalidProfile},
		{"inline comment in command", "", Profile{Name: "a", CredentialProcess: "x #y"}, ErrInvalidProfile},
		{"quoted command", "", Profile{Name: "a", CredentialProcess: "'x y'"}, ErrInvalidProfile},
		{"extra key clash", "", Profile{Name: "a", CredentialProcess: "x", Extra: map[string]string{"Region": "y"}}, ErrInvalidProfile},
		{"extra key with space", "", Profile{Name: "a", CredentialProcess: "x", Extra: map[string]string{"a b": "y"}}, ErrInvalidProfile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config")
			must(t, os.WriteFile(path, []byte(tc.existing), 0o640))
			err := WriteProfile(path, tc.profile)
			if !errors.Is(err, tc.want) {
				t.Fatalf("WriteProfile: %v, want %v", err, tc.want)
			}
			t.Logf("error: %v", err)
			got, _ := os.ReadFile(path)
			if string(got) != tc.existing {
				t.Errorf("file changed to %q", got)
			}
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
				t.Errorf("leftovers: %v", entries)
			}
		})
	}
}

func TestWriteProfileThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "dotfiles", "aws-config")
	must(t, os.MkdirAll(filepath.Dir(real), 0o700))
	must(t, os.WriteFile(real, []byte("[profile a]\nregion = x\n"), 0o600))
	link := filepath.Join(dir, "config")
	must(t, os.Symlink(real, link))
	must(t, WriteProfile(link, covalentProfile("/d")))
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	if p, err := ReadProfile(real, "covalent"); err != nil || p.Region != "us-east-1" {
		t.Errorf("target not updated: %+v, %v", p, err)
	}
}

func TestReadProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	must(t, os.WriteFile(path, []byte(otherContent), 0o600))
	tests := []struct {
		name    string
		want    *Profile
		wantErr error
	}{
		{"default", &Profile{Name: "default", Region: "eu-west-1", Extra: map[string]string{"output": "json"}}, nil},
		{"work", nil, nil},
		{"missing", nil, ErrProfileNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ReadProfile(path, tc.name)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadProfile: %v, want %v", err, tc.wantErr)
			}
			if tc.want != nil && (p.Region != tc.want.Region || p.Extra["output"] != "json") {
				t.Errorf("ReadProfile = %+v", p)
			}
			if tc.name == "work" && p.Extra["sso_account_id"] != "111122223333" {
				t.Errorf("work = %+v", p)
			}
		})
	}
	if _, err := ReadProfile(filepath.Join(t.TempDir(), "none"), "x"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestCommandLineThroughShell runs each line through the real /bin/sh -c, as
// the AWS SDKs do, and checks the arguments come back exactly; and the line
// goes through a config file and the SDK's loader unchanged.
func TestCommandLineThroughShell(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"plain", []string{"/usr/local/bin/lanyard", "exec-helper", "--dir", "/etc/covalent/pki", "--", "--role-arn", "arn:aws:iam::1:role/x"}},
		{"spaces", []string{"/opt/my tools/lanyard", "credential-process", "--dir", "/srv/Covalent PKI/host 1"}},
		{"spaces first and last", []string{"/opt/my tools/lanyard", "--dir", "/srv/a b"}},
		{"single quotes", []string{"/bin/x", "it's", "'", "''"}},
		{"shell metacharacters", []string{"/bin/x", "$HOME", "`id`", "$(id)", "a&&b", "a|b", "a>b", "*", "?", "~", "!x", "{a,b}", "a\\b", `"q"`}},
		{"comment characters", []string{"/bin/x", "#notacomment", "a #b", "a ;b", ";", "a;b", "x\t#y"}},
		{"empty argument", []string{"/bin/x", "", "y"}},
		{"equals", []string{"/bin/x", "--endpoint=https://h:1/p?q=1"}},
		{"unicode", []string{"/home/josé/lanyard", "naïve", "日本"}},
		{"trailing backslash", []string{"/bin/x", "a b\\"}},
		{"tab", []string{"/bin/x", "a\tb"}},
		{"first word assignment-like", []string{"A=b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			line := CommandLine(tc.args)
			t.Logf("line: %s", line)
			if p := valueProblem(line); p != "" {
				t.Fatalf("line unsafe for the config file: %s", p)
			}
			// Put printf in front to see the words sh -c makes of the line.
			out, err := exec.Command("/bin/sh", "-c", "printf '%s\\0' "+line).Output()
			if err != nil {
				t.Fatalf("sh -c: %v", err)
			}
			got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
			if !slices.Equal(got, tc.args) {
				t.Errorf("sh -c split = %q, want %q", got, tc.args)
			}
			// botocore and the AWS CLI split with Python's shlex instead.
			if py, err := exec.LookPath("python3"); err == nil {
				out, err := exec.Command(py, "-c", "import json,shlex,sys; print(json.dumps(shlex.split(sys.argv[1])))", line).Output()
				if err != nil {
					t.Fatalf("python3 shlex: %v", err)
				}
				var words []string
				if err := json.Unmarshal(out, &words); err != nil || !slices.Equal(words, tc.args) {
					t.Errorf("shlex.split = %q (%v), want %q", words, err, tc.args)
				}
			}
			// Through the config file and the AWS SDK loader.
			path := filepath.Join(t.TempDir(), "config")
			must(t, WriteProfile(path, Profile{Name: "x", CredentialProcess: line}))
			if sc := sdkProfile(t, path, "x"); sc.CredentialProcess != line {
				t.Errorf("SDK credential_process = %q, want %q", sc.CredentialProcess, line)
			}
		})
	}
}

func TestHandOffArgs(t *testing.T) {
	h := testHelper
	h.SessionDuration = "900"
	flags := []string{
		"--trust-anchor-arn", h.TrustAnchorARN, "--profile-arn", h.ProfileARN, "--role-arn", h.RoleARN,
		"--region", "us-east-1", "--endpoint", "https://127.0.0.1:9443", "--session-duration", "900",
	}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"exec-helper", ExecHelperArgs("/usr/bin/lanyard", "/etc/pki", h),
			append([]string{"/usr/bin/lanyard", "exec-helper", "--dir", "/etc/pki", "--"}, flags...)},
		{"helper", HelperCredentialProcessArgs("/usr/bin/aws_signing_helper", "/etc/pki/versions/000042", h),
			append([]string{"/usr/bin/aws_signing_helper", "credential-process",
				"--certificate", "/etc/pki/versions/000042/cert.pem",
				"--private-key", "/etc/pki/versions/000042/privkey.pem",
				"--intermediates", "/etc/pki/versions/000042/chain.pem"}, flags...)},
		{"builtin", BuiltinArgs("/usr/bin/lanyard", "/etc/pki", h),
			append([]string{"/usr/bin/lanyard", "credential-process", "--dir", "/etc/pki"}, flags...)},
		{"minimal", BuiltinArgs("lanyard", "d", HelperArgs{TrustAnchorARN: "t", ProfileARN: "p", RoleARN: "r"}),
			[]string{"lanyard", "credential-process", "--dir", "d", "--trust-anchor-arn", "t", "--profile-arn", "p", "--role-arn", "r"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Equal(tc.got, tc.want) {
				t.Errorf("got  %q\nwant %q", tc.got, tc.want)
			}
		})
	}
	if err := (HelperArgs{RoleARN: "r"}).Validate(); !errors.Is(err, ErrMissingARN) || !strings.Contains(err.Error(), "--profile-arn") {
		t.Errorf("Validate: %v", err)
	}
	if err := testHelper.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestPath(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", "/tmp/x/config")
	if got := Path(); got != "/tmp/x/config" {
		t.Errorf("Path = %q", got)
	}
	t.Setenv("AWS_CONFIG_FILE", "")
	t.Setenv("HOME", "/home/alice")
	if got := Path(); got != "/home/alice/.aws/config" {
		t.Errorf("Path = %q", got)
	}
}

func ptr(s string) *string { return &s }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
