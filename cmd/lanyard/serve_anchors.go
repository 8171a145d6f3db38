package main

import (
	"context"
	"fmt"
	"time"

	"github.com/lanyard/lanyard/internal/app"
	"github.com/lanyard/lanyard/store"
	"github.com/lanyard/lanyard/store/engine"
)

// anchorsDevProfile is the AWS profile name the dev welcome's enroll
// command writes.
const anchorsDevProfile = "covalent"

// anchorsEnrollFlags adds to the dev welcome's enroll command the flags
// that make the written AWS profile work against the trust anchor.
func anchorsEnrollFlags(a *app.App) []string {
	s := a.Anchors
	if s == nil || s.TrustAnchorARN() == "" || s.ProfileARN() == "" {
		return nil
	}
	cfg := a.AnchorsConfig
	flags := []string{"--aws-profile", anchorsDevProfile, "--trust-anchor-arn", s.TrustAnchorARN(), "--profile-arn", s.ProfileARN(),
		"--role-arn", cfg.RoleARN, "--region", cfg.Region}
	if cfg.Endpoint != "" {
		flags = append(flags, "--endpoint", cfg.Endpoint)
	}
	return flags
}

// anchorsOpenStore opens the store for a CLI command, giving up after one
// second when `lanyard serve` holds its lock.
func anchorsOpenStore(path string) (store.Store, error) {
	db, err := engine.Open(context.Background(), path, engine.Options{Timeout: time.Second, NoBackup: true})
	if err != nil {
		return nil, fmt.Errorf("open the store %s: %w (is `lanyard serve` running? it holds the store)", path, err)
	}
	return db, nil
}
