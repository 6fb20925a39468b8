//go:build unix

package natsrv

import "syscall"

// descriptorLimit is the soft RLIMIT_NOFILE of the process (which the Go
// runtime raises to the hard limit at start), or 0 when unknown.
func descriptorLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}
