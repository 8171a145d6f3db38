package hostdir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lanyard/lanyard/internal/atomicfile"
	"github.com/lanyard/lanyard/renewal/awsconfig"
)

// File names of the enrollment record inside a host folder.
const (
	// EnrollmentFile holds the [Enrollment] as JSON (0600).
	EnrollmentFile = "enrollment.json"
	// RootsFile holds the CA roots the folder trusts, PEM (0644).
	RootsFile = "ca.pem"
)

// Enrollment is DIR/enrollment.json: what renew, the agent and doctor need
// to reach the CA again. The CA roots are kept beside it in DIR/ca.pem.
type Enrollment struct {
	// CA is the CA's base URL, e.g. https://ca.example.net:8443.
	CA string `json:"ca"`
	// KeyType is the key type the folder was enrolled with (P-256, P-384,
	// RSA-2048, RSA-3072).
	KeyType string `json:"key_type"`
	// AWS holds the hand-off settings, when an AWS profile was written.
	AWS *AWSSettings `json:"aws,omitempty"`
}

// AWSSettings records the AWS config profile enroll wrote and the Roles
// Anywhere parameters it hands to the signer.
type AWSSettings struct {
	// Profile is the AWS config profile name.
	Profile string `json:"profile"`
	// ConfigFile is the AWS config file the profile was written to.
	ConfigFile string `json:"config_file"`
	// Signer is what the profile runs: "aws_signing_helper" or "lanyard".
	Signer string `json:"signer"`
	awsconfig.HelperArgs
}

// ReadEnrollment reads DIR/enrollment.json and DIR/ca.pem. A folder without
// enrollment.json is not enrolled: the error says so and wraps
// fs.ErrNotExist.
func ReadEnrollment(dir string) (*Enrollment, []byte, error) {
	e, err := ReadEnrollmentFile(dir)
	if err != nil {
		return nil, nil, err
	}
	roots, err := ReadRoots(dir)
	if err != nil {
		return nil, nil, err
	}
	return e, roots, nil
}

// ReadEnrollmentFile reads DIR/enrollment.json alone (doctor reports it and
// ca.pem each on its own). A missing file gives an error wrapping
// fs.ErrNotExist; one that does not parse, an error saying so.
func ReadEnrollmentFile(dir string) (*Enrollment, error) {
	p := filepath.Join(dir, EnrollmentFile)
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s is not an enrolled folder (run lanyard enroll): %w", dir, err)
	}
	var e Enrollment
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("%s does not parse: %w", p, err)
	}
	return &e, nil
}

// ReadRoots reads DIR/ca.pem, the CA roots the folder trusts.
func ReadRoots(dir string) ([]byte, error) {
	p := filepath.Join(dir, RootsFile)
	roots, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return roots, nil
}

// WriteEnrollment writes DIR/ca.pem (0644) and DIR/enrollment.json (0600),
// each atomically.
func WriteEnrollment(dir string, e *Enrollment, rootsPEM []byte) error {
	raw, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", EnrollmentFile, err)
	}
	if err := WriteRoots(dir, rootsPEM); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, EnrollmentFile), append(raw, '\n'), 0o600)
}

// WriteRoots replaces DIR/ca.pem (0644) atomically: a reader sees the old
// roots or the new ones.
func WriteRoots(dir string, rootsPEM []byte) error {
	return atomicfile.Write(filepath.Join(dir, RootsFile), rootsPEM, 0o644)
}
