package ingress

// ConfirmKey is confirmKey, for the tests.
var ConfirmKey = confirmKey
