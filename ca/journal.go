package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/lanyard/lanyard/internal/atomicfile"
)

// A change of several CA files at once (a root rotation and its finish)
// goes through a journal, so that the folder is never seen half-changed,
// not even after a crash: every new content is first written to the
// staging folder pendingDir with a manifest, fsynced, then the staging
// folder is renamed to journalDir (the commit point, one rename), and
// only then are the files replaced one by one. A crash before the
// rename leaves the folder as it was (the stage is thrown away by the
// next change); a crash after it is completed by whatever reads the
// folder next (ReadState, Load, the next change), replaying the journal,
// which is idempotent.
const (
	pendingDir = ".change.pending"
	journalDir = ".change.commit"
	// manifestFile names the journal's list of changes.
	manifestFile = "manifest.json"
)

// fileChange is one file of a journaled change: data written to path
// with mode perm, or, with remove, path removed.
type fileChange struct {
	path   string
	data   []byte
	perm   fs.FileMode
	remove bool
}

// manifestEntry is a fileChange as the manifest records it; the content
// is the staged file File.
type manifestEntry struct {
	Path   string `json:"path"`
	Perm   uint32 `json:"perm,omitempty"`
	Remove bool   `json:"remove,omitempty"`
	File   string `json:"file,omitempty"`
}

// commitChanges applies changes to the CA folder dir all or nothing (see
// above). An error before the commit point leaves the folder unchanged;
// an error after it is completed by the next replayJournal.
func commitChanges(dir string, changes []fileChange) error {
	if _, err := replayJournal(dir); err != nil {
		return err
	}
	stage := filepath.Join(dir, pendingDir)
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("ca: remove an old stage: %w", err)
	}
	if err := os.Mkdir(stage, 0o700); err != nil {
		return fmt.Errorf("ca: stage the change: %w", err)
	}
	fail := func(err error) error {
		_ = os.RemoveAll(stage)
		return err
	}
	entries := make([]manifestEntry, 0, len(changes))
	for i, c := range changes {
		// The journal may be replayed from another working folder.
		path, err := filepath.Abs(c.path)
		if err != nil {
			return fail(fmt.Errorf("ca: stage the change: %w", err))
		}
		e := manifestEntry{Path: path, Remove: c.remove}
		if !c.remove {
			e.Perm, e.File = uint32(c.perm), strconv.Itoa(i)
			if err := atomicfile.Create(filepath.Join(stage, e.File), c.data, 0o600); err != nil {
				return fail(fmt.Errorf("ca: stage %s: %w", c.path, err))
			}
		}
		entries = append(entries, e)
	}
	m, err := json.Marshal(entries)
	if err != nil {
		return fail(fmt.Errorf("ca: stage the change: %w", err))
	}
	if err := atomicfile.Create(filepath.Join(stage, manifestFile), m, 0o600); err != nil {
		return fail(fmt.Errorf("ca: stage the change: %w", err))
	}
	if err := syncDir(stage); err != nil {
		return fail(err)
	}
	if err := os.Rename(stage, filepath.Join(dir, journalDir)); err != nil {
		return fail(fmt.Errorf("ca: commit the change: %w", err))
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if crashAfterCommit {
		return errors.New("ca: simulated crash after the commit point")
	}
	_, err = replayJournal(dir)
	return err
}

// crashAfterCommit, set only by tests, stops commitChanges right after
// its commit point, as a crash there would.
var crashAfterCommit bool

// replayJournal completes a committed change of the CA folder dir, if
// one is there, and removes its journal; it reports whether there was
// one. Replaying twice does no harm.
func replayJournal(dir string) (bool, error) {
	journal := filepath.Join(dir, journalDir)
	m, err := os.ReadFile(filepath.Join(journal, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ca: read the journal of an interrupted change: %w", err)
	}
	var entries []manifestEntry
	if err := json.Unmarshal(m, &entries); err != nil {
		return false, fmt.Errorf("ca: the journal %s is damaged: %w", journal, err)
	}
	for _, e := range entries {
		if e.Remove {
			if err := os.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, fmt.Errorf("ca: complete an interrupted change: %w", err)
			}
			if err := syncDir(filepath.Dir(e.Path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return false, err
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(journal, e.File))
		if err != nil {
			return false, fmt.Errorf("ca: the journal %s is damaged: %w", journal, err)
		}
		if err := os.MkdirAll(filepath.Dir(e.Path), 0o700); err != nil {
			return false, fmt.Errorf("ca: complete an interrupted change: %w", err)
		}
		if err := atomicfile.Write(e.Path, data, fs.FileMode(e.Perm)); err != nil {
			return false, fmt.Errorf("ca: complete an interrupted change: %w", err)
		}
	}
	if err := os.RemoveAll(journal); err != nil {
		return false, fmt.Errorf("ca: remove the journal: %w", err)
	}
	return true, syncDir(dir)
}
