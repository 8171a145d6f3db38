package postgres

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The engine's own settings travel in the store URL beside pgx's pool_*
// parameters, so one string configures the whole store (the store key
// and LANYARD_STORE): lanyard_query_timeout, lanyard_resolve_timeout,
// lanyard_lease_ttl, lanyard_linger (durations, "10s"), lanyard_max_batch
// and lanyard_writers (counts). They are taken out of the URL before pgx
// sees it (pgx would send an unknown parameter to the server, which
// refuses it). A value set in Options by the caller wins over the URL.
const paramPrefix = "lanyard_"

// takeParams removes the lanyard_* parameters from dsn and applies them
// to opts. An unknown lanyard_ parameter or a bad value is an error: a
// typo must not silently leave a default in place.
func takeParams(dsn string, opts *Options) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || !strings.Contains(u.RawQuery, paramPrefix) {
		return dsn, nil // pgx reports a malformed URL (redacted)
	}
	q := u.Query()
	for name, vals := range q {
		if !strings.HasPrefix(name, paramPrefix) {
			continue
		}
		v := vals[len(vals)-1]
		if err := setParam(name, v, opts); err != nil {
			return "", fmt.Errorf("store URL parameter %s=%q: %w", name, v, err)
		}
		q.Del(name)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func setParam(name, v string, opts *Options) error {
	dur := func(p *time.Duration) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 10s")
		}
		if *p == 0 {
			*p = d
		}
		return nil
	}
	count := func(p *int) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("want a positive whole number")
		}
		if *p == 0 {
			*p = n
		}
		return nil
	}
	switch name {
	case "lanyard_query_timeout":
		return dur(&opts.QueryTimeout)
	case "lanyard_resolve_timeout":
		return dur(&opts.ResolveTimeout)
	case "lanyard_lease_ttl":
		if opts.Lease == nil {
			// Only a serving replica campaigns; commands ignore it.
			_, err := time.ParseDuration(v)
			return err
		}
		return dur(&opts.Lease.TTL)
	case "lanyard_linger":
		return dur(&opts.Linger)
	case "lanyard_max_batch":
		return count(&opts.MaxBatch)
	case "lanyard_writers":
		return count(&opts.Writers)
	}
	return fmt.Errorf("unknown (known: lanyard_query_timeout, lanyard_resolve_timeout, lanyard_lease_ttl, lanyard_linger, lanyard_max_batch, lanyard_writers)")
}
