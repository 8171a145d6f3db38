//go:build unix

package hostdir

import (
	"io/fs"
	"os"
	"syscall"
)

// ownedByCaller reports the owner of fi and whether it is the effective
// user.
func ownedByCaller(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), int(st.Uid) == os.Geteuid()
}
