package reconciler

import (
	"math"
	"time"
)

// Judges is how many nodes judge a silent node first: the ones right after
// it in the plan (the rest of its wave, then the next wave; the last nodes
// of the plan are judged by the ones right before them). A verdict on a
// node from what the leases show of it (its lease expired: node_lost; it
// took none within nodeTimeout: unreachable) is due for its judges when it
// is due; each further period it stays due (a lease TTL, a nodeTimeout)
// the judges are four times as many, until they are every node of the
// plan, and then any node, so a silent node whose judges are silent too is
// still recorded. With every node judging at once, each verdict of a
// 10,000-node rollout was attempted by up to 10,000 nodes, each attempt a
// transaction over every lease slot, and under load that herd starved the
// very nodes it judged (docs/rollouts.md, "Who records a verdict").
const Judges = 3

// judgesFor is how many judges a verdict has that has been due for late,
// in periods of period: Judges, times four per period.
func judgesFor(late, period time.Duration) int {
	w := Judges
	if period <= 0 {
		return math.MaxInt
	}
	for k := late / period; k > 0; k-- {
		if w > math.MaxInt/4 {
			return math.MaxInt
		}
		w *= 4
	}
	return w
}

// judging is where the deciding node stands to judge the others of a
// rollout: its place in the plan, flattened (-1: not in it), found when
// first needed (a walk of the plan).
type judging struct {
	node  string
	found bool
	self  int
	total int
	r     *Rollout
}

// judgingOf is in.Node's judging in r.
func judgingOf(in Input, r *Rollout) *judging {
	return &judging{node: in.Node, total: r.PlannedCount(), r: r}
}

// judges reports whether the deciding node is one of the first w judges of
// the node at flat position p of the plan (a node judges itself too: what
// it records of itself it knows first). They are the w positions after p,
// or, near the end of the plan, the last w+1 positions but p: nodes whose
// wave is open or next, which read the leases at least once a TTL (a node
// two or more waves behind keeps its last read, so the first nodes of the
// plan are not judged by the last). Once w covers the plan, any node
// judges, in the plan or not.
func (j *judging) judges(p, w int) bool {
	if w >= j.total {
		return true
	}
	if !j.found {
		j.self, j.found = j.r.flatPos(j.node), true
	}
	if j.self < 0 || p < 0 || p >= j.total {
		return false
	}
	if j.self == p {
		return true
	}
	if p+w < j.total {
		return j.self > p && j.self <= p+w
	}
	return j.self >= j.total-1-w
}

// judgesNode is judges for a node by name.
func (j *judging) judgesNode(node string, w int) bool {
	if w >= j.total {
		return true
	}
	return j.judges(j.r.flatPos(node), w)
}

// flatPos is node's position in the plan, counting every wave before its
// own, or -1.
func (r *Rollout) flatPos(node string) int {
	n := 0
	for _, w := range r.Waves {
		for i, name := range w {
			if name == node {
				return n + i
			}
		}
		n += len(w)
	}
	return -1
}

// waveStart is the flat position of the first node of wave k.
func (r *Rollout) waveStart(k int) int {
	n := 0
	for _, w := range r.Waves[:k] {
		n += len(w)
	}
	return n
}
