package isolate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/fleetops/reconciler/spec"
)

// maxRequest bounds what the child reads: the files (spec.MaxTotalBytes,
// base64 in JSON) and their names.
const maxRequest = spec.MaxTotalBytes*4/3 + 16<<20

// Serve is the child's side: it reads one request from r, sets the limits
// it names, loads the files with spec.LoadFiles and writes the result to w.
// An invalid spec is a result, not an error: Serve returns an error only
// when it cannot read the request, set the limits or write the answer.
func Serve(r io.Reader, w io.Writer) error {
	var req request
	if err := json.NewDecoder(io.LimitReader(r, maxRequest)).Decode(&req); err != nil {
		return fmt.Errorf("eval-spec: read request: %w", err)
	}
	if err := setLimits(req.Memory, req.CPU.Seconds()); err != nil {
		return fmt.Errorf("eval-spec: %w", err)
	}
	fleet, err := spec.LoadFiles(req.Files)
	req.Files = nil
	resp, err := encodeResult(fleet, err)
	if err == nil {
		err = json.NewEncoder(w).Encode(resp)
	}
	if err != nil {
		return fmt.Errorf("eval-spec: write result: %w", err)
	}
	return nil
}

// setLimits bounds this process. RLIMIT_AS is what really bounds memory: the
// kernel refuses any mapping past it, and the Go runtime then dies with
// "out of memory", however fast the evaluation allocates (a watchdog that
// samples the heap can be outrun between samples). It is set to what the
// process has mapped now plus memory. debug.SetMemoryLimit at the same figure
// makes the collector work harder as the heap nears it, so a spec that fits
// when collected eagerly is not refused for garbage. RLIMIT_CPU kills a child
// whose parent is gone (SIGXCPU, then SIGKILL at the hard limit).
func setLimits(memory int64, cpuSeconds float64) error {
	if memory > 0 {
		mapped, err := mappedBytes()
		if err != nil {
			return err
		}
		as := uint64(mapped + memory)
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: as, Max: as}); err != nil {
			return fmt.Errorf("set RLIMIT_AS to %d bytes: %w", as, err)
		}
		debug.SetMemoryLimit(memory)
	}
	if cpuSeconds > 0 {
		s := uint64(math.Ceil(cpuSeconds))
		if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: s, Max: s + 1}); err != nil {
			return fmt.Errorf("set RLIMIT_CPU to %d s: %w", s, err)
		}
	}
	return nil
}

// mappedBytes is this process's virtual size (the first field of
// /proc/self/statm, in pages).
func mappedBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, fmt.Errorf("read mapped size: %w", err)
	}
	field, _, _ := bytes.Cut(b, []byte(" "))
	pages, err := strconv.ParseInt(string(field), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read mapped size: /proc/self/statm: %w", err)
	}
	return pages * int64(os.Getpagesize()), nil
}
