package hostdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// tmpPrefix starts the name of every temporary file, folder and symlink this
// package creates; Open removes leftovers with this prefix.
const tmpPrefix = ".tmp-"

// WriteFileAtomic replaces path with data so that readers see either the old
// content or the new one, never a mix or a partial file: it writes a
// temporary file in the same folder (named ".tmp-*"), sets mode (exactly,
// regardless of the umask), fsyncs it, renames it over path and fsyncs the
// folder. If path is a symlink, the link itself is replaced. On error the
// temporary file is removed and path is left as it was.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tmpPrefix+base+"-*")
	if err != nil {
		return fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("write %s: chmod temporary file: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: rename into place: %w", path, err)
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeNewFile creates path (which must not exist), writes data with mode
// set exactly, and fsyncs it. Its errors are *fs.PathError values that
// already name the path.
func writeNewFile(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir fsyncs a folder so that renames and creations inside it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s for fsync: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil && !errors.Is(serr, syscall.EINVAL) { // some file systems cannot fsync folders
		return fmt.Errorf("fsync folder %s: %w", dir, serr)
	}
	if cerr != nil {
		return fmt.Errorf("close folder %s: %w", dir, cerr)
	}
	return nil
}

// replaceSymlink points link at target atomically: it creates a symlink
// under a temporary name in the same folder and renames it over link.
func replaceSymlink(target, link string) error {
	dir, base := filepath.Split(link)
	if dir == "" {
		dir = "."
	}
	for range 10 {
		tmp := filepath.Join(dir, tmpPrefix+base+"-"+randomSuffix())
		if err := os.Symlink(target, tmp); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return fmt.Errorf("create symlink %s -> %s: %w", tmp, target, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("rename symlink over %s: %w", link, err)
		}
		return nil
	}
	return fmt.Errorf("create temporary symlink for %s: too many name collisions", link)
}
