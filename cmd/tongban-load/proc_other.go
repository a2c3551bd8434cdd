//go:build !linux

package main

import "os/exec"

// setPdeathsig does nothing outside Linux; the harness stops its children
// itself on a normal exit.
func setPdeathsig(*exec.Cmd) {}

// settle does nothing outside Linux.
func settle() {}
