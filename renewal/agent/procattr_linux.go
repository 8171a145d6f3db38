package agent

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes a supervised helper die with the agent.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
