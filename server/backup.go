package server

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"net/http"
	"time"
)

// BackupPath serves a consistent copy of the store to the admin client
// certificate (`lanyard backup` while the server holds the store's lock).
const BackupPath = "/_backup"

// BackupDigestTrailer is the HTTP trailer that carries the hex SHA-256 of
// the backup stream. It is sent only when the whole copy was written, so
// a client that has it and a matching digest has the whole copy.
const BackupDigestTrailer = "Lanyard-Backup-Sha256"

// backupStallTimeout replaces the server's write timeout for a backup:
// a store of any size may take as long as it takes, but a client that
// reads nothing for this long is cut off, because the copy holds a read
// transaction open (bbolt cannot grow the file while one is open).
// 30 s is the server's default write timeout for a whole answer.
const backupStallTimeout = 30 * time.Second

// backupSource is what the handler needs from the store: a consistent
// copy streamed to w. The bbolt engine writes its file from one read
// transaction (Tx.WriteTo); an engine that cannot (PostgreSQL, whose
// backup is pg_dump) returns an error saying so, before writing.
type backupSource interface {
	BackupTo(w io.Writer) error
}

func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	if err := s.checkAdmin(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	var src backupSource = s.opts.Store
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="lanyard.db"`)
	w.Header().Set("Trailer", BackupDigestTrailer)
	bw := &backupWriter{w: w, rc: http.NewResponseController(w), sum: sha256.New()}
	if err := src.BackupTo(bw); err != nil {
		s.log.Error("backup", "err", err, "bytes_sent", bw.n)
		if bw.n == 0 {
			http.Error(w, "backup failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		// Part of the copy is out: break the response off, so the client
		// sees a failed transfer, never a short file that ended cleanly.
		panic(http.ErrAbortHandler)
	}
	w.Header().Set(BackupDigestTrailer, hex.EncodeToString(bw.sum.Sum(nil)))
	s.log.Info("backup sent", "bytes", bw.n, "by", adminName(r.Context()))
}

// backupWriter moves the write deadline forward before every write (a
// stall deadline instead of the server's whole-answer deadline) and
// hashes what it writes.
type backupWriter struct {
	w   io.Writer
	rc  *http.ResponseController
	sum hash.Hash
	n   int64
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if err := b.rc.SetWriteDeadline(time.Now().Add(backupStallTimeout)); err != nil {
		return 0, err
	}
	n, err := b.w.Write(p)
	b.sum.Write(p[:n])
	b.n += int64(n)
	return n, err
}
