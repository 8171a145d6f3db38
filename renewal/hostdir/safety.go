package hostdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrUnsafe means the host folder, its versions folder or a version folder
// is a symlink, is not owned by the calling user, or is writable by group
// or others: someone else could redirect privkey.pem. Nothing is read from
// or written to such a folder.
var ErrUnsafe = errors.New("hostdir: unsafe folder")

// unsafeWrite are the mode bits that let someone other than the owner plant
// or replace entries in a folder.
const unsafeWrite os.FileMode = 0o022

// CheckSafe reports, as one error wrapping ErrUnsafe per problem, whether
// the host folder at path, DIR/versions and the version `current` names are
// real folders (not symlinks) owned by the caller and not group- or
// world-writable. A folder that does not exist yet is not a problem (Open
// creates it). `lanyard doctor` runs it; Open and OpenReadOnly refuse an
// unsafe folder.
func CheckSafe(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("hostdir: %s: %w", path, err)
	}
	var errs []error
	for _, p := range []string{abs, filepath.Join(abs, VersionsDir)} {
		if err := checkFolder(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if v, err := (&Dir{Path: abs}).Current(); err == nil {
			if err := checkFolder(filepath.Join(abs, VersionsDir, v)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkFolder checks one folder without following a symlink at p itself.
func checkFolder(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(p)
		return fmt.Errorf("%w: %s is a symlink (to %s), not a folder", ErrUnsafe, p, target)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s is not a folder", ErrUnsafe, p)
	case fi.Mode().Perm()&unsafeWrite != 0:
		return fmt.Errorf("%w: %s is writable by group or others (%04o); chmod go-w it", ErrUnsafe, p, fi.Mode().Perm())
	}
	if uid, mine := ownedByCaller(fi); !mine {
		return fmt.Errorf("%w: %s belongs to uid %d, not to this user (uid %d)", ErrUnsafe, p, uid, os.Geteuid())
	}
	return nil
}
