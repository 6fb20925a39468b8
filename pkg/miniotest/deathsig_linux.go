package miniotest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills the server when the test binary dies, so that no
// server outlives a crashed or killed test run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
