package isolate

// DecodeFleet is decodeFleet, for the round-trip test.
var DecodeFleet = decodeFleet
