package isolate

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fleetops/reconciler/spec"
)

// request is what the parent writes on the child's stdin.
type request struct {
	// Memory is the address space the evaluation may map, in bytes, beyond
	// what the child has mapped once it has read this request (0: no limit).
	Memory int64 `json:"memory"`
	// CPU bounds the child's CPU time (0: no limit): a backstop for a child
	// whose parent is gone; the parent's deadline is the bound that counts.
	CPU   time.Duration     `json:"cpu"`
	Files map[string][]byte `json:"files"`
}

// response is what the child writes on stdout: exactly one of its fields.
type response struct {
	Fleet    json.RawMessage `json:"fleet,omitempty"`
	Problems []spec.Error    `json:"problems,omitempty"` // *spec.Errors
	Error    string          `json:"error,omitempty"`    // any other error, as text
	Limit    bool            `json:"limit,omitempty"`    // Error wraps spec.ErrLimit
}

func encodeResult(f *spec.Fleet, err error) (response, error) {
	var serr *spec.Errors
	switch {
	case err == nil:
		b, err := json.Marshal(f)
		return response{Fleet: b}, err
	case errors.As(err, &serr) && err == error(serr):
		return response{Problems: serr.List}, nil
	default:
		return response{Error: err.Error(), Limit: errors.Is(err, spec.ErrLimit)}, nil
	}
}

func (r response) result() (*spec.Fleet, error) {
	switch {
	case r.Problems != nil:
		return nil, &spec.Errors{List: r.Problems}
	case r.Error != "":
		return nil, &childError{msg: r.Error, limit: r.Limit}
	case r.Fleet == nil:
		return nil, errors.New("evaluate spec: the child answered neither a fleet nor an error")
	}
	return decodeFleet(r.Fleet)
}

// decodeFleet decodes a fleet as spec.LoadFiles returned it. JSON leaves out
// a node's empty labels and vars (omitempty), which LoadFiles returns as
// empty maps, not nil: they are put back, so both paths give equal fleets.
func decodeFleet(b []byte) (*spec.Fleet, error) {
	var f spec.Fleet
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("evaluate spec: decode the child's fleet: %w", err)
	}
	for name, n := range f.Nodes {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		if n.Vars == nil {
			n.Vars = map[string]string{}
		}
		f.Nodes[name] = n
	}
	return &f, nil
}

// childError is an error the child returned, other than a list of problems:
// its text as the child wrote it, and whether it is about a limit.
type childError struct {
	msg   string
	limit bool
}

func (e *childError) Error() string { return e.msg }

func (e *childError) Is(target error) bool { return e.limit && target == spec.ErrLimit }
