package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The CPU accounting of a timed window. On a machine where the server,
// PostgreSQL and the load generator share the cores, a rate is bounded
// by their CPU time per request together: cores / (server + database +
// generator). The report shows all three, so that a rate can be read
// against that bound.

// processCPU is the user+system CPU time so far of process pid (Linux;
// 0 when it cannot be read).
func processCPU(pid int) time.Duration {
	f := statFields(pid)
	if len(f) < 13 {
		return 0
	}
	// utime is the 12th field after the command name, stime the 13th, in
	// clock ticks (100 per second on Linux).
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// statFields are the fields of /proc/<pid>/stat after the ")" that ends
// the command name (which may hold spaces): state, ppid, ...
func statFields(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(raw), ')')
	return strings.Fields(string(raw[i+1:]))
}

// treeCPU is the CPU time so far of process root and its children (a
// PostgreSQL postmaster and its backends, which lanyard's pool keeps
// alive through a window, so none of their time is lost when one
// exits).
func treeCPU(root int) time.Duration {
	if root <= 0 {
		return 0
	}
	t := processCPU(root)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		if f := statFields(pid); len(f) > 1 && f[1] == strconv.Itoa(root) {
			t += processCPU(pid)
		}
	}
	return t
}

// cpuMeter reads, at the start and end of a window, the CPU time of the
// server (and its peers), of the database (when there is one) and of
// this process, the load generator.
type cpuMeter struct {
	s                  *server
	server, db, genCPU time.Duration
}

func startCPU(s *server) *cpuMeter {
	return &cpuMeter{s: s, server: s.cpuTime(), db: treeCPU(s.dbPID), genCPU: processCPU(os.Getpid())}
}

// perOp returns the CPU time per request of each part since start.
func (m *cpuMeter) perOp(n int) (server, db, gen time.Duration) {
	per := func(d time.Duration) time.Duration { return d / time.Duration(n) }
	return per(m.s.cpuTime() - m.server), per(treeCPU(m.s.dbPID) - m.db), per(processCPU(os.Getpid()) - m.genCPU)
}
