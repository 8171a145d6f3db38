// Package atomicfile writes files so that readers, and a crash, see either
// the old content or the new one, never a mix or a torn file. It is the one
// such writer of the repository, shared by the host side (host folders,
// AWS config, dev tokens) and the server side (CA files, store backups).
//
// Every write goes to a temporary file in the destination's folder (named
// TempPrefix + base + random), whose mode is set exactly (whatever the
// umask), is fsynced, then renamed (Write, WriteFunc) or hard-linked
// (Create) into place; the folder is then fsynced so the new name is
// durable. On error the temporary file is removed and the destination is
// as it was.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TempPrefix starts the name of every temporary file this package creates,
// so that owners of a folder can remove leftovers of a crash.
const TempPrefix = ".tmp-"

// Write replaces path with data, mode set exactly. If path is a symlink,
// the link itself is replaced.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteFunc(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write with the content produced by write (a database
// snapshot, say) instead of held in memory.
func WriteFunc(path string, mode os.FileMode, write func(io.Writer) error) error {
	tmp, err := writeTemp(path, mode, write)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: rename into place: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Create writes a new file at path with data, mode set exactly, and never
// replaces one: if path exists it fails with an error wrapping
// fs.ErrExist. It does not fsync the folder, so that a caller creating
// several files syncs each folder once ([SyncDir]).
func Create(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// writeTemp writes a fsynced temporary file beside path and returns its name.
func writeTemp(path string, mode os.FileMode, write func(io.Writer) error) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return "", fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	fail := func(what string, err error) (string, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write %s: %s%w", path, what, err)
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		return fail("chmod temporary file: ", err)
	}
	if err := write(f); err != nil {
		return fail("", err)
	}
	if err := f.Sync(); err != nil {
		return fail("fsync: ", err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("write %s: close: %w", path, err)
	}
	return tmp, nil
}

// SyncDir fsyncs a folder so that renames and creations inside it are
// durable. EINVAL is ignored: some file systems cannot fsync a folder, and
// there is nothing more a writer can do there.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s for fsync: %w", dir, err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil && !errors.Is(serr, syscall.EINVAL) {
		return fmt.Errorf("fsync folder %s: %w", dir, serr)
	}
	if cerr != nil {
		return fmt.Errorf("close folder %s: %w", dir, cerr)
	}
	return nil
}
