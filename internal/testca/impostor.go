package testca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/api/lanyard/v1/lanyardv1connect"
)

// Issue decides what an [Impostor] answers to a CSR: a leaf (PEM) and its
// chain (PEM).
type Issue func(csr *x509.CertificateRequest) (certPEM, chainPEM string)

// Impostor serves the host API (Enroll and Renew; the other calls are
// unimplemented) over TLS with a server certificate from c's own
// intermediate, so a host that trusts c's root reaches it, but answers
// whatever issue returns. It stands for a CA front whose TLS key leaked,
// or a buggy CA: what hosts must refuse to write. It asks for, and does
// not check, a client certificate. It returns the URL.
func (c *CA) Impostor(t testing.TB, issue Issue) string {
	t.Helper()
	cert, err := c.Authority.ServerTLSCertificate([]string{"127.0.0.1"}, time.Hour, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(lanyardv1connect.NewCertificateServiceHandler(impostor{issue: issue}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequestClientCert,
	}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String()
}

// SignAs signs a client certificate for pub with c's intermediate key,
// read from the CA folder, bypassing issuance (nothing is recorded): the
// names are the caller's. It returns the leaf and c's chain, PEM.
func (c *CA) SignAs(t testing.TB, pub crypto.PublicKey, cn string, dns ...string) (certPEM, chainPEM string) {
	t.Helper()
	certFile, err := os.ReadFile(c.Paths.IntermediateCert)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(c.Paths.IntermediateKey)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("testca: intermediate key pair: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	now := c.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, kp.Leaf, pub, kp.PrivateKey)
	if err != nil {
		t.Fatalf("testca: sign as %s: %v", cn, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(c.Authority.ChainPEM())
}

type impostor struct {
	lanyardv1connect.UnimplementedCertificateServiceHandler
	issue Issue
}

func (i impostor) answer(der []byte) (*v1.Bundle, *v1.RenewalInfo, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	certPEM, chainPEM := i.issue(csr)
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		return nil, nil, connect.NewError(connect.CodeInternal, errors.New("impostor: no certificate"))
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, connect.NewError(connect.CodeInternal, err)
	}
	return &v1.Bundle{
			CertificatePem: certPEM, ChainPem: chainPEM, Serial: v1.FormatSerial(leaf.SerialNumber),
			NotBefore: timestamppb.New(leaf.NotBefore), NotAfter: timestamppb.New(leaf.NotAfter),
		}, &v1.RenewalInfo{
			WindowStart: timestamppb.New(leaf.NotAfter.Add(-time.Hour)), WindowEnd: timestamppb.New(leaf.NotAfter), Reason: "scheduled",
		}, nil
}

func (i impostor) Enroll(_ context.Context, req *connect.Request[v1.EnrollRequest]) (*connect.Response[v1.EnrollResponse], error) {
	b, info, err := i.answer(req.Msg.GetCsr())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&v1.EnrollResponse{Bundle: b, RenewalInfo: info}), nil
}

func (i impostor) Renew(_ context.Context, req *connect.Request[v1.RenewRequest]) (*connect.Response[v1.RenewResponse], error) {
	b, info, err := i.answer(req.Msg.GetCsr())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&v1.RenewResponse{Bundle: b, RenewalInfo: info}), nil
}
