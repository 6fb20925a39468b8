package sns

// Bounds of the certificate cache, for the tests.
const (
	MaxFetches      = maxFetches
	MaxCacheEntries = maxCacheEntries
)

// CacheLen returns how many entries v's certificate cache holds, fetches in
// flight included.
func CacheLen(v *Verifier) int {
	v.certs.mu.Lock()
	defer v.certs.mu.Unlock()
	return len(v.certs.entries)
}

// CachePeak returns the most entries v's certificate cache ever held.
func CachePeak(v *Verifier) int {
	v.certs.mu.Lock()
	defer v.certs.mu.Unlock()
	return v.certs.peak
}
