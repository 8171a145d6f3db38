package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
)

func newStoreCopyCmd() *cobra.Command {
	var from, to string
	c := &cobra.Command{
		Use:   "copy --from LOCATION --to LOCATION",
		Short: "Copy every record from one store to another (bbolt file or postgres:// URL)",
		Long: `copy moves an existing store to another engine, for example a bbolt file to
PostgreSQL, so no host has to enroll again. It is idempotent: records already in
the destination are kept, so an interrupted copy is finished by running it again.
Stop lanyard serve on the source first. The copy is verified by counts (every
kind of record) and by comparing a sample of certificates.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return storeCopy(cmd.Context(), from, to, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&from, "from", "", "source store (bbolt path or postgres:// URL)")
	c.Flags().StringVar(&to, "to", "", "destination store (bbolt path or postgres:// URL)")
	_ = c.MarkFlagRequired("from")
	_ = c.MarkFlagRequired("to")
	return c
}

// counting is a Sink that counts what passes, forwarding to next (if set).
type counting struct {
	next                                 store.Sink
	certs, tokens, audit, sessions, meta atomic.Int64
	progress                             func()
	sample                               []*store.Cert
}

func (c *counting) LoadCerts(ctx context.Context, v []*store.Cert) error {
	if len(c.sample) < 50 && len(v) > 0 {
		c.sample = append(c.sample, v[0], v[len(v)-1])
	}
	c.certs.Add(int64(len(v)))
	return c.fwd(func(s store.Sink) error { return s.LoadCerts(ctx, v) })
}
func (c *counting) LoadTokens(ctx context.Context, v []*store.Token) error {
	c.tokens.Add(int64(len(v)))
	return c.fwd(func(s store.Sink) error { return s.LoadTokens(ctx, v) })
}
func (c *counting) LoadAudit(ctx context.Context, v []*store.AuditEvent) error {
	c.audit.Add(int64(len(v)))
	return c.fwd(func(s store.Sink) error { return s.LoadAudit(ctx, v) })
}
func (c *counting) LoadSessions(ctx context.Context, v map[string]*store.Session) error {
	c.sessions.Add(int64(len(v)))
	return c.fwd(func(s store.Sink) error { return s.LoadSessions(ctx, v) })
}
func (c *counting) LoadMeta(ctx context.Context, v map[string][]byte) error {
	c.meta.Add(int64(len(v)))
	return c.fwd(func(s store.Sink) error { return s.LoadMeta(ctx, v) })
}
func (c *counting) LoadCRLNumber(ctx context.Context, n int64) error {
	return c.fwd(func(s store.Sink) error { return s.LoadCRLNumber(ctx, n) })
}

func (c *counting) fwd(f func(store.Sink) error) error {
	if c.progress != nil {
		c.progress()
	}
	if c.next == nil {
		return nil
	}
	return f(c.next)
}

func (c *counting) String() string {
	return fmt.Sprintf("%d certificates, %d tokens, %d audit events, %d sessions, %d settings",
		c.certs.Load(), c.tokens.Load(), c.audit.Load(), c.sessions.Load(), c.meta.Load())
}

func storeCopy(ctx context.Context, from, to string, out io.Writer) error {
	if from == to {
		return fmt.Errorf("store copy: --from and --to name the same store")
	}
	src, err := engine.Open(ctx, from, engine.Options{NoBackup: true})
	if err != nil {
		return fmt.Errorf("store copy: source: %w", err)
	}
	defer src.Close()
	dst, err := engine.Open(ctx, to, engine.Options{NoBackup: true})
	if err != nil {
		return fmt.Errorf("store copy: destination: %w", err)
	}
	defer dst.Close()
	exp, ok1 := src.(store.Exporter)
	sink, ok2 := dst.(store.Sink)
	if !ok1 || !ok2 {
		return fmt.Errorf("store copy: an engine cannot export or load")
	}
	cnt := &counting{next: sink}
	cnt.progress = func() { fmt.Fprintf(out, "\rcopying: %s", cnt) }
	if err := exp.Export(ctx, cnt); err != nil {
		fmt.Fprintln(out)
		return fmt.Errorf("store copy: %w", err)
	}
	fmt.Fprintf(out, "\rcopied: %s\n", cnt)
	// Verify: the destination holds at least as many of each kind, and the
	// sampled certificates are equal field by field.
	check := &counting{}
	if err := dst.(store.Exporter).Export(ctx, check); err != nil {
		return fmt.Errorf("store copy: verify: %w", err)
	}
	for _, p := range []struct {
		what     string
		src, dst int64
	}{{"certificates", cnt.certs.Load(), check.certs.Load()}, {"tokens", cnt.tokens.Load(), check.tokens.Load()},
		{"audit events", cnt.audit.Load(), check.audit.Load()}, {"sessions", cnt.sessions.Load(), check.sessions.Load()},
		{"settings", cnt.meta.Load(), check.meta.Load()}} {
		if p.dst < p.src {
			return fmt.Errorf("store copy: verify: destination has %d %s, source %d", p.dst, p.what, p.src)
		}
	}
	for _, want := range cnt.sample {
		got, err := dst.GetCert(want.Serial)
		if err != nil {
			return fmt.Errorf("store copy: verify certificate %s: %w", want.Serial, err)
		}
		if got.CN != want.CN || string(got.DER) != string(want.DER) || !got.NotAfter.Equal(want.NotAfter) ||
			(got.Revocation == nil) != (want.Revocation == nil) || got.PreviousSerial != want.PreviousSerial || got.TokenID != want.TokenID {
			return fmt.Errorf("store copy: verify: certificate %s differs in the destination", want.Serial)
		}
	}
	if sn, err := src.CRLNumber(); err == nil {
		if dn, err := dst.CRLNumber(); err != nil || dn < sn {
			return fmt.Errorf("store copy: verify: CRL number %d in the destination, %d in the source", dn, sn)
		}
	}
	fmt.Fprintf(out, "verified: destination holds %s; %d sampled certificates equal\n", check, len(cnt.sample))
	return nil
}
