package streams

// Compared clears the fields the comparison of Apply covers, for the test
// that keeps it covering every field the definitions set.
var (
	StreamCompared   = streamCompared
	ConsumerCompared = consumerCompared
	KVCompared       = kvCompared
)
