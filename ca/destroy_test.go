package ca

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	lanyardv1 "github.com/lanyard/lanyard/api/lanyard/v1"
	"github.com/lanyard/lanyard/internal/realtools"
)

// retiredCRLs is how many retired intermediates of the CA folder sign a CRL.
func retiredCRLs(t *testing.T, dir string) int {
	t.Helper()
	a, err := Load(LoadOptions{Dir: dir})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	defer a.Close()
	now := time.Now()
	crls, err := a.SignRetiredCRLs(CRLRequest{Number: 7, ThisUpdate: now, NextUpdate: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("SignRetiredCRLs: %v", err)
	}
	return len(crls)
}

func TestDestroyRetiredKey(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts func(t *testing.T) InitOptions
		gone func(t *testing.T, res *DestroyResult)
	}{
		{name: "key file", opts: func(*testing.T) InitOptions { return InitOptions{} },
			gone: func(t *testing.T, res *DestroyResult) {
				if _, err := os.Lstat(res.Key); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the key file %s is still there (%v)", res.Key, err)
				}
			}},
		{name: "PKCS11 token", opts: func(t *testing.T) InitOptions {
			tok := realtools.NewSoftHSMToken(t)
			return InitOptions{KMS: tok.KMS(), RootKeyPath: filepath.Join(t.TempDir(), "offline", RootKeyFile)}
		}, gone: func(t *testing.T, res *DestroyResult) {
			if !res.InKMS {
				t.Fatal("the key was not reported as a KMS object")
			}
			if _, _, err := kmsLoadSigner("", "", res.Key, nil); err == nil {
				t.Fatalf("the token still holds %s", res.Key)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts(t)
			opts.Dir = filepath.Join(t.TempDir(), "ca")
			if _, err := Init(opts); err != nil {
				t.Fatal(err)
			}
			res, err := RotateIntermediate(RotateOptions{Dir: opts.Dir, RootKeyPath: opts.RootKeyPath})
			if err != nil {
				t.Fatalf("RotateIntermediate: %v", err)
			}
			serial := lanyardv1.FormatSerial(res.Old.SerialNumber)
			if n := retiredCRLs(t, opts.Dir); n != 1 {
				t.Fatalf("%d retired CRLs before, want 1", n)
			}

			for _, bad := range []string{"", "../../root", lanyardv1.FormatSerial(res.New.SerialNumber)} {
				if _, err := DestroyRetiredKey(DestroyOptions{Dir: opts.Dir, Serial: bad}); err == nil {
					t.Errorf("DestroyRetiredKey(%q) succeeded", bad)
				}
			}
			dry, err := DestroyRetiredKey(DestroyOptions{Dir: opts.Dir, Serial: serial, DryRun: true})
			if err != nil || !dry.DryRun {
				t.Fatalf("dry run: %+v, %v", dry, err)
			}
			if n := retiredCRLs(t, opts.Dir); n != 1 {
				t.Fatal("a dry run destroyed the key")
			}

			got, err := DestroyRetiredKey(DestroyOptions{Dir: opts.Dir, Serial: serial})
			if err != nil {
				t.Fatalf("DestroyRetiredKey: %v", err)
			}
			tt.gone(t, got)
			if n := retiredCRLs(t, opts.Dir); n != 0 {
				t.Fatalf("%d retired CRLs after the key was destroyed, want 0", n)
			}
			if _, err := os.Stat(filepath.Join(opts.Dir, RetiredDir, serial+".crt")); err != nil {
				t.Fatalf("the retired certificate went with the key: %v", err)
			}
			if _, err := DestroyRetiredKey(DestroyOptions{Dir: opts.Dir, Serial: serial}); !errors.Is(err, ErrNoRetiredKey) {
				t.Fatalf("second destroy: %v, want ErrNoRetiredKey", err)
			}
		})
	}
}
