package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Pending is a file prepared beside its destination by a writer that needs
// a path of its own (bbolt opens the copy of a store by name; a download
// is checked before it replaces anything). [Pending.Commit] fsyncs it,
// renames it over the destination and fsyncs the folder; until then the
// destination is as it was, and [Pending.Discard] removes the file.
type Pending struct {
	dest, name string
	committed  bool
}

// Prepare creates an empty temporary file, mode set exactly, in the folder
// of dest (named TempPrefix + base + random, like every temporary file of
// this package). Defer Discard.
func Prepare(dest string, mode os.FileMode) (*Pending, error) {
	name, err := writeTemp(dest, mode, func(io.Writer) error { return nil })
	if err != nil {
		return nil, err
	}
	return &Pending{dest: dest, name: name}, nil
}

// Name is the path of the prepared file, for the writer to fill.
func (p *Pending) Name() string { return p.name }

// Commit fsyncs the prepared file, renames it over the destination and
// fsyncs the folder, so that the new content is durable under its name.
func (p *Pending) Commit() error {
	f, err := os.Open(p.name)
	if err != nil {
		return fmt.Errorf("write %s: %w", p.dest, err)
	}
	serr := f.Sync()
	f.Close()
	if serr != nil {
		return fmt.Errorf("write %s: fsync: %w", p.dest, serr)
	}
	if err := os.Rename(p.name, p.dest); err != nil {
		return fmt.Errorf("write %s: rename into place: %w", p.dest, err)
	}
	p.committed = true
	if err := SyncDir(filepath.Dir(p.dest)); err != nil {
		return fmt.Errorf("write %s: %w", p.dest, err)
	}
	return nil
}

// Discard removes the prepared file unless it was committed. It is safe to
// call more than once, and after Commit.
func (p *Pending) Discard() {
	if !p.committed {
		_ = os.Remove(p.name)
	}
}
