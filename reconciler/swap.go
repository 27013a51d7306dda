package reconciler

// Swap kinds: how a node's release switches versions (AppReport.Swap,
// NodeStatus.Swap, `release inspect`, `diff --verify`). Only a hot swap
// never refuses a request; the others are shown before they cost any.
const (
	// SwapHot: the process driver starts the new version on the listening
	// sockets the agent holds, then drains the old one.
	SwapHot = "hot"
	// SwapStopStart: a process release that declares no listen sockets
	// opens its own port, so the old version stops before the new one
	// starts: connections are refused meanwhile.
	SwapStopStart = "stop-then-start"
	// SwapHooks: the exec driver's release hooks switch as they see fit.
	SwapHooks = "hooks"
	// SwapInPlace: the otp driver swaps code inside the running VM.
	SwapInPlace = "in-place"
)

// SwapStopStartText is how a stop-then-start swap is named to operators.
const SwapStopStartText = "stop-then-start (no listen sockets)"

// SwapOf is the swap of a release run by driver ("" is "process") that
// declares listen sockets.
func SwapOf(driver string, listen int) string {
	switch driver {
	case "exec":
		return SwapHooks
	case "otp":
		return SwapInPlace
	}
	if listen == 0 {
		return SwapStopStart
	}
	return SwapHot
}

// SwapText describes a swap kind for people.
func SwapText(swap string) string {
	switch swap {
	case SwapStopStart:
		return SwapStopStartText
	case SwapHot:
		return "hot (on the sockets the agent holds)"
	case SwapHooks:
		return "by the release's hooks (exec driver)"
	case SwapInPlace:
		return "in place (Erlang/OTP release_handler)"
	}
	return swap
}
