//go:build !linux

package agent

import "os/exec"

// setProcAttr does nothing outside Linux (no parent-death signal).
func setProcAttr(*exec.Cmd) {}
