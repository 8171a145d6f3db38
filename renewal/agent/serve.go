package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Serve is the whole `lanyard agent --config FILE` (and `lanyard-agent`):
// it loads the configuration, logs JSON to stderr at logLevel (empty: the
// file's log_level, else info), tells systemd when it is ready and when it
// stops (Type=notify; a no-op elsewhere), and runs until ctx ends or a
// final error.
func Serve(ctx context.Context, cfgPath, logLevel string) error {
	if cfgPath == "" {
		return errors.New("--config is required (see deploy/agent.example.yaml)")
	}
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	if logLevel == "" {
		logLevel = cfg.LogLevel
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	a, err := New(cfg, Options{
		Logger: log,
		Ready:  func() { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) },
	})
	if err != nil {
		return err
	}
	log.Info("agent starting", "config", cfgPath, "dirs", len(cfg.Dirs))
	err = a.Run(ctx)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	return err
}
