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

// settle writes back every dirty page of the machine (sync(2)) before a
// scenario is measured, so that the page cache one scenario leaves dirty
// (the in-process audit scenario writes hundreds of megabytes) is not
// written back inside the next one: on ext4 a journal commit flushes the
// dirty data of other files too, and the gateway's fsyncs would pay for it.
func settle() { syscall.Sync() }
