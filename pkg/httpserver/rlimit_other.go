//go:build !unix

package httpserver

// descriptorLimit is unknown on this system.
func descriptorLimit() int { return 0 }
