package hostdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lanyard/lanyard/internal/atomicfile"
)

// tmpPrefix starts the name of every temporary file, folder and symlink this
// package creates (atomicfile's prefix); Open removes leftovers with it.
const tmpPrefix = atomicfile.TempPrefix

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
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

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
