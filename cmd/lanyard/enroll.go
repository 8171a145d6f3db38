package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/caclient"
	"github.com/lanyard/lanyard/renewal/agent"
	"github.com/lanyard/lanyard/renewal/awsconfig"
	"github.com/lanyard/lanyard/renewal/hostdir"
)

// awsSettings are the hand-off settings recorded in DIR/enrollment.json
// (hostdir.AWSSettings, shared with renew, the agent and doctor).
type awsSettings = hostdir.AWSSettings

func newEnrollCmd() *cobra.Command {
	var caURL, fingerprint, token, tokenFile, out, keyType, rootsPath string
	var aws awsSettings
	var want caclient.Names
	cmd := &cobra.Command{
		Use:   "enroll --ca URL --fingerprint SHA256 --token-file FILE --out DIR [--cn NAME [--dns-name NAME ...]] [--aws-profile NAME ...]",
		Short: "Enroll this host: new key, certificate, Certbot-style files, and an AWS config profile",
		Long: `enroll makes a new private key on this host, redeems the single-use token for
a certificate, and writes DIR/{cert,chain,fullchain,privkey}.pem (Certbot's names;
the key 0600) as links into an immutable version folder. With --aws-profile it
writes a one-line credential_process profile to the AWS config file
($AWS_CONFIG_FILE or ~/.aws/config), leaving every other profile untouched.

Trust: with --fingerprint only the root with that SHA-256 is trusted and stored
in DIR/ca.pem, plus a second root only when the bundle also carries a
cross-certificate of it signed by the pinned root (a root rotation). The
certificate the CA returns must chain to those roots for client authentication
and, with --cn, carry exactly that CN and the --dns-name SANs; otherwise
nothing is written.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := readToken(cmd, token, tokenFile)
			if err != nil {
				return err
			}
			if caURL == "" || token == "" || out == "" {
				return errors.New("--ca, --token-file FILE (or --token - to read it from stdin) and --out are required")
			}
			if fingerprint == "" && rootsPath == "" {
				return errors.New("--fingerprint (the CA root's SHA-256, printed by lanyard serve) or --roots is required to trust the CA")
			}
			if aws.Profile != "" && (aws.TrustAnchorARN == "" || aws.ProfileARN == "" || aws.RoleARN == "") {
				return errors.New("--aws-profile needs --trust-anchor-arn, --profile-arn and --role-arn")
			}
			if aws.Signer != "aws_signing_helper" && aws.Signer != "lanyard" {
				return fmt.Errorf("--signer %q: want aws_signing_helper or lanyard", aws.Signer)
			}
			var names *caclient.Names
			if want.CN != "" {
				names = &want
			} else if len(want.DNSNames) > 0 {
				return errors.New("--dns-name needs --cn")
			}
			return enroll(cmd, caURL, fingerprint, rootsPath, token, out, keyType, names, &aws)
		},
	}
	f := cmd.Flags()
	f.StringVar(&caURL, "ca", "", "CA URL, e.g. https://ca.example.net:8443")
	f.StringVar(&fingerprint, "fingerprint", "", "SHA-256 fingerprint of the CA root (hex)")
	f.StringVar(&rootsPath, "roots", "", "CA root certificate file, instead of --fingerprint")
	f.StringVar(&token, "token", "", `enrollment token; "-" reads it from stdin (a literal token is visible in ps and shell history: prefer --token-file or -)`)
	f.StringVar(&tokenFile, "token-file", "", "read the enrollment token from this file")
	f.StringVar(&out, "out", "", "host folder to write")
	f.StringVar(&want.CN, "cn", "", "the CN the token is for: asked for in the CSR and checked in the certificate (lanyard token prints it)")
	f.StringSliceVar(&want.DNSNames, "dns-name", nil, "a DNS SAN the token grants (repeatable; with --cn the certificate must carry exactly these)")
	f.StringVar(&keyType, "key-type", "P-256", "key type: P-256, P-384, RSA-2048, RSA-3072, RSA-4096")
	f.StringVar(&aws.Profile, "aws-profile", "", "write this AWS config profile")
	f.StringVar(&aws.ConfigFile, "aws-config-file", "", "AWS config file (default $AWS_CONFIG_FILE or ~/.aws/config)")
	f.StringVar(&aws.Signer, "signer", "aws_signing_helper", "what the profile runs: aws_signing_helper (through lanyard exec-helper) or lanyard (built-in credential-process)")
	f.StringVar(&aws.TrustAnchorARN, "trust-anchor-arn", "", "Roles Anywhere trust anchor ARN")
	f.StringVar(&aws.ProfileARN, "profile-arn", "", "Roles Anywhere profile ARN")
	f.StringVar(&aws.RoleARN, "role-arn", "", "IAM role ARN")
	f.StringVar(&aws.Region, "region", "", "AWS region")
	f.StringVar(&aws.Endpoint, "endpoint", "", "Roles Anywhere endpoint (default: AWS's)")
	return cmd
}

// enroll redeems token for a certificate asking for want (nil: whatever the
// token grants), verifies the answer against the roots it trusts and only
// then writes the host folder.
func enroll(cmd *cobra.Command, caURL, fingerprint, rootsPath, token, out, keyType string, want *caclient.Names, aws *awsSettings) error {
	ctx := cmd.Context()
	roots, err := trustRoots(ctx, caURL, fingerprint, rootsPath)
	if err != nil {
		return err
	}
	cl, err := caclient.New(caURL, roots, nil)
	if err != nil {
		return err
	}
	key, err := agent.NewKey(keyType)
	if err != nil {
		return err
	}
	var asked caclient.Names
	if want != nil {
		asked = *want
	}
	csr, keyPEM, err := agent.NewCSR(key, asked)
	if err != nil {
		return err
	}
	resp, err := cl.Certificates.Enroll(ctx, connect.NewRequest(&v1.EnrollRequest{Token: token, Csr: csr}))
	if err != nil {
		return fmt.Errorf("enroll at %s: %w", caURL, err)
	}
	b := resp.Msg.GetBundle()
	leaf, err := caclient.VerifyIssued(roots, []byte(b.GetCertificatePem()), []byte(b.GetChainPem()), want, cliNow())
	if err != nil {
		return fmt.Errorf("enroll at %s: nothing written: %w", caURL, err)
	}
	if want == nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: no --cn given, so the certificate's names (CN %q, DNS %q) were not checked against what you expected\n",
			leaf.Subject.CommonName, leaf.DNSNames)
	}
	d, err := hostdir.Open(out)
	if err != nil {
		return err
	}
	ver, err := d.Write(hostdir.Material{CertPEM: []byte(b.GetCertificatePem()), ChainPEM: []byte(b.GetChainPem()), KeyPEM: keyPEM})
	if err != nil {
		return err
	}
	e := &hostdir.Enrollment{CA: caURL, KeyType: keyType}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "enrolled: serial %s, valid until %s\n", b.GetSerial(), b.GetNotAfter().AsTime().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "  %s/{cert,chain,fullchain,privkey}.pem -> current -> versions/%s\n", out, ver)
	if aws.Profile != "" {
		if err := writeAWSProfile(out, aws); err != nil {
			return err
		}
		e.AWS = aws
		fmt.Fprintf(w, "  AWS profile %q in %s (credential_process via %s)\n", aws.Profile, aws.ConfigFile, aws.Signer)
	}
	if err := hostdir.WriteEnrollment(out, e, roots); err != nil {
		return err
	}
	info := resp.Msg.GetRenewalInfo()
	fmt.Fprintf(w, "  renew between %s and %s: run `lanyard agent` (or lanyard renew --dir %s)\n",
		info.GetWindowStart().AsTime().Format("2006-01-02 15:04 MST"), info.GetWindowEnd().AsTime().Format("15:04 MST"), out)
	return nil
}

// readToken returns the enrollment token from --token-file, from stdin
// (--token -, one line; a prompt when stdin is a terminal) or, with a
// warning, from --token itself.
func readToken(cmd *cobra.Command, token, tokenFile string) (string, error) {
	switch {
	case tokenFile != "" && token != "":
		return "", errors.New("give either --token or --token-file, not both")
	case tokenFile != "":
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case token == "-":
		in := cmd.InOrStdin()
		if f, ok := in.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprint(cmd.ErrOrStderr(), "enrollment token: ")
			}
		}
		line, err := bufio.NewReader(io.LimitReader(in, maxTokenLine)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("--token -: read stdin: %w", err)
		}
		return strings.TrimSpace(line), nil
	case token != "":
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: --token puts the secret in this command line, visible in ps and your shell history; use --token-file FILE or --token - (stdin)")
	}
	return token, nil
}

// maxTokenLine bounds what --token - reads: a token is under 100 bytes.
const maxTokenLine = 4 << 10

// trustRoots returns the roots the host folder will trust (and store in
// DIR/ca.pem): with --fingerprint only the pinned root and the roots it
// cross-signs (caclient.PinnedRoots), taken from --roots or from the CA's
// /roots.pem; with --roots alone, the whole file the user provided.
func trustRoots(ctx context.Context, caURL, fingerprint, rootsPath string) ([]byte, error) {
	if rootsPath == "" {
		return caclient.Bootstrap(ctx, caURL, fingerprint, cliNow())
	}
	roots, err := os.ReadFile(rootsPath)
	if err != nil {
		return nil, err
	}
	if fingerprint == "" {
		if _, err := caclient.ParseCertificates(roots); err != nil {
			return nil, fmt.Errorf("%s: %w", rootsPath, err)
		}
		return roots, nil
	}
	pinned, err := caclient.PinnedRoots(roots, fingerprint, cliNow())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rootsPath, err)
	}
	return pinned, nil
}

// writeAWSProfile writes the one-line credential_process profile. The line
// resolves DIR/current once per call (exec-helper or the built-in signer),
// so a renewal between the helper's certificate and key reads cannot pair
// a new certificate with an old key.
func writeAWSProfile(dir string, aws *awsSettings) error {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		self = "lanyard"
	}
	if aws.ConfigFile == "" {
		aws.ConfigFile = awsconfig.Path()
	}
	var args []string
	if aws.Signer == "lanyard" {
		args = awsconfig.BuiltinArgs(self, absDir, aws.HelperArgs)
	} else {
		args = awsconfig.ExecHelperArgs(self, absDir, aws.HelperArgs)
	}
	p := awsconfig.Profile{Name: aws.Profile, CredentialProcess: awsconfig.CommandLine(args), Region: aws.Region}
	if err := awsconfig.WriteProfile(aws.ConfigFile, p); err != nil {
		return fmt.Errorf("AWS config %s: %w", aws.ConfigFile, err)
	}
	return nil
}
