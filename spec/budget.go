package spec

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Budget is rollout.maxFailures: a number of nodes (1), or a share of the
// plan's nodes ("10%"), rounded down. The zero Budget allows no failure.
type Budget struct {
	N       int  // nodes, when not Percent
	Percent bool // N is a percentage of the plan's nodes
}

// Of is how many of total planned nodes may fail.
func (b Budget) Of(total int) int {
	if b.Percent {
		return total * b.N / 100
	}
	return b.N
}

// String is the budget as written: "1" or "10%".
func (b Budget) String() string {
	if b.Percent {
		return strconv.Itoa(b.N) + "%"
	}
	return strconv.Itoa(b.N)
}

// MarshalJSON writes a number, or a "P%" string.
func (b Budget) MarshalJSON() ([]byte, error) {
	if b.Percent {
		return json.Marshal(b.String())
	}
	return json.Marshal(b.N)
}

// UnmarshalJSON reads a number >= 0 or a "P%" string (P from 0 to 100).
func (b *Budget) UnmarshalJSON(raw []byte) error {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if !validPercent(s) {
			return fmt.Errorf("maxFailures: got %q, want a share such as \"10%%\"", s)
		}
		n, _ := strconv.Atoi(strings.TrimSuffix(s, "%"))
		*b = Budget{N: n, Percent: true}
		return nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 {
		return fmt.Errorf("maxFailures: got %s, want a number of nodes >= 0 or a share such as \"10%%\"", raw)
	}
	*b = Budget{N: n}
	return nil
}

// validPercent accepts "P%" with P an integer from 0 to 100.
func validPercent(s string) bool {
	n, err := strconv.Atoi(strings.TrimSuffix(s, "%"))
	return strings.HasSuffix(s, "%") && err == nil && n >= 0 && n <= 100 && !strings.HasPrefix(s, "+")
}
