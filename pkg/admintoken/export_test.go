package admintoken

// MaxTracked exports maxTracked to the tests.
const MaxTracked = maxTracked
