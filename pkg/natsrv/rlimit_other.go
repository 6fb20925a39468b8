//go:build !unix

package natsrv

// descriptorLimit is unknown on this system.
func descriptorLimit() int { return 0 }
