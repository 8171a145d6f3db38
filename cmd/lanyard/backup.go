package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lanyard/lanyard/internal/atomicfile"
	"github.com/lanyard/lanyard/server"
	"github.com/lanyard/lanyard/store"
)

// backupStallTimeout ends an online backup that has received nothing for
// this long (the server cuts off a client that reads nothing for as long).
// The whole transfer has no deadline: a store of any size takes as long
// as the network needs.
const backupStallTimeout = 30 * time.Second

// downloadBackup streams the running server's copy of the store (GET
// server.BackupPath, as the admin) into dst. The bytes go to a new file
// in dst's folder (mode 0600), never to dst itself; only when the whole
// stream arrived (the server's digest trailer matches), the copy opens
// as a store (store.Verify) and it is on disk (fsync) does it take dst's
// name, atomically. On any failure dst is untouched and nothing is left
// behind. It returns the size of the copy.
func downloadBackup(ctx context.Context, hc *http.Client, baseURL, dst string) (n int64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The admin client has a whole-request timeout sized for API calls;
	// a backup has a stall timeout instead.
	c := *hc
	c.Timeout = 0
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(baseURL, "/")+server.BackupPath, nil)
	if err != nil {
		return 0, fmt.Errorf("online backup: %w", err)
	}
	stall := time.AfterFunc(backupStallTimeout, func() {
		cancel(fmt.Errorf("nothing received for %v", backupStallTimeout))
	})
	defer stall.Stop()
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("online backup: %w", causeOr(ctx, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return 0, fmt.Errorf("online backup: server answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	pending, err := atomicfile.Prepare(dst, 0o600)
	if err != nil {
		return 0, fmt.Errorf("online backup: %w", err)
	}
	defer pending.Discard()
	tmp := pending.Name()
	f, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("online backup: %w", err)
	}
	defer f.Close()
	sum := sha256.New()
	n, err = io.Copy(io.MultiWriter(f, sum), &progressReader{r: resp.Body, stall: stall})
	if err != nil {
		return n, fmt.Errorf("online backup: transfer broke off after %d bytes: %w", n, causeOr(ctx, err))
	}
	if err := checkDigest(resp.Trailer.Get(server.BackupDigestTrailer), sum); err != nil {
		return n, fmt.Errorf("online backup: %w after %d bytes", err, n)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("online backup: %w", err)
	}
	if err := store.Verify(tmp); err != nil {
		return n, fmt.Errorf("online backup: the copy is not a sound store: %w", err)
	}
	if err := pending.Commit(); err != nil { // fsynced, renamed, the rename durable
		return n, fmt.Errorf("online backup: %w", err)
	}
	return n, nil
}

func checkDigest(want string, sum hash.Hash) error {
	if want == "" {
		return errors.New("the server did not confirm the copy was whole (no digest trailer)")
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != want {
		return fmt.Errorf("the copy's SHA-256 %s is not the server's %s", got, want)
	}
	return nil
}

// causeOr returns why ctx ended (the stall timeout) if it has, else err.
func causeOr(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// progressReader pushes the stall timer back on every read that brings
// bytes.
type progressReader struct {
	r     io.Reader
	stall *time.Timer
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.stall.Reset(backupStallTimeout)
	}
	return n, err
}
