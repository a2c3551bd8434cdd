package main

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel kill cmd when this harness dies, so that a
// crashed or interrupted run leaves no gateway behind.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
