package reconciler

import "slices"

// Rollout outcomes, as folded from a record.
const (
	OutcomeNone       = ""            // still progressing
	OutcomeCompleted  = "completed"   // every node upgraded, skipped or failed without rollback
	OutcomeFailed     = "failed"      // a node failed; a rollback may follow
	OutcomeRolledBack = "rolled_back" // a rollback commit restored From
	OutcomeSuperseded = "superseded"  // a newer target replaced it
)

// Rollout is the state of one rollout, folded from its record's events.
type Rollout struct {
	ID     string
	Target string
	From   string
	// Waves' name lists are the record's (the started or options_changed
	// event's): read them, never change them. A copy of the plan in every
	// node's fold was 10,000 names per node at 10,000 nodes.
	Waves    [][]string
	Stages   []StageSpan       // the plan's stages over Waves, none without rollout.stages
	Started  int               // index in the record of the started event
	WaveDone map[int]int       // wave -> index of its wave_done event
	Done     map[string]string // node -> lease token of its node_done
	Failed   map[string]string // node -> reason
	// FailedOrder lists the failed nodes in the order of their first
	// node_failed: the failure budget names the first one past it.
	FailedOrder []string
	Held        map[string]string // node -> reason (held or pinned in the inventory)
	Skipped     map[string]string // node -> reason (unreachable)
	// Lost: node -> the tokens of its leases that expired without a
	// verdict (node_lost), oldest first; LostAt: the record index of its
	// last node_lost.
	Lost     map[string][]string
	LostAt   map[string]int
	Paused   bool
	Resumed  int          // index of the last resumed event, -1 if none
	Options  RolloutFlags // batch size and delay in force
	Outcome  string
	Reason   string // why it failed or was rolled back
	FailedBy string // the node whose failure failed it
	Rollback string // the rollback commit, once written
	// SpecAt is the newest commit that steered the rollout: its ID, or the
	// Spec of its last paused, resumed or options_changed event.
	SpecAt string
	// IsRollback: the rollout's commit is a rollback (of RollbackOf);
	// AtOnce: it applies at once, without leases or waves.
	IsRollback bool
	RollbackOf string
	AtOnce     bool
	// Approvals are the approved events, in record order.
	Approvals []RecordedApproval
}

// place is where a node stands in the plan: its wave, and its position in it.
type place struct{ wave, pos int }

// placeOf returns where node stands in the plan; ok is false when it is not in it.
func (r *Rollout) placeOf(node string) (place, bool) {
	for k, w := range r.Waves {
		if i := slices.Index(w, node); i >= 0 {
			return place{wave: k, pos: i}, true
		}
	}
	return place{}, false
}

// PlannedCount is how many nodes the plan holds.
func (r *Rollout) PlannedCount() int {
	n := 0
	for _, w := range r.Waves {
		n += len(w)
	}
	return n
}

// Latest folds the events of the most recent rollout in a record. It returns
// nil when the record holds no rollout.
func Latest(events []Event) *Rollout {
	start := -1
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == EventStarted {
			start = i
			break
		}
	}
	if start < 0 {
		return nil
	}
	return fold(events, start)
}

// Folding keeps the latest rollout of one app's record folded as the
// record grows: a record is append-only, so a read folds only the events
// added since the one before. (A node waiting in a rollout of 10,000 folded
// the whole record at every pass: BenchmarkDecideWaiting.) The Rollout it
// returns is extended in place by the next call: use it until then, never
// keep or change it. A Folding is not safe for concurrent use.
type Folding struct {
	n    int   // events folded
	last Event // events[n-1], to tell a record that was replaced
	r    *Rollout
}

// Latest is Latest(events), folding only what was added since the last call.
func (f *Folding) Latest(events []Event) *Rollout {
	if f.r == nil || len(events) < f.n || f.n == 0 || !sameEvent(events[f.n-1], f.last) ||
		slices.ContainsFunc(events[f.n:], func(e Event) bool { return e.Type == EventStarted }) {
		f.r = Latest(events)
		f.remember(events)
		return f.r
	}
	for i := f.n; i < len(events); i++ {
		if events[i].Rollout == f.r.ID {
			f.r.apply(i, events[i])
		}
	}
	f.remember(events)
	return f.r
}

func (f *Folding) remember(events []Event) {
	f.n = len(events)
	if f.n > 0 {
		f.last = events[f.n-1]
	}
}

// sameEvent tells whether a and b are the same record event, as far as a
// replaced record can be told from a grown one.
func sameEvent(a, b Event) bool {
	return a.Type == b.Type && a.Rollout == b.Rollout && a.Node == b.Node && a.Wave == b.Wave &&
		a.Lease == b.Lease && a.Time.Equal(b.Time)
}

func fold(events []Event, start int) *Rollout {
	s := events[start]
	r := &Rollout{
		ID: s.Rollout, Target: s.Target, From: s.From, Started: start,
		Waves: slices.Clone(s.Waves), Stages: cloneStages(s.Stages), Resumed: -1, SpecAt: s.Rollout,
		WaveDone: map[int]int{}, Done: map[string]string{},
		Failed: map[string]string{}, Skipped: map[string]string{}, Held: map[string]string{},
		Lost: map[string][]string{}, LostAt: map[string]int{},
		IsRollback: s.Rollback, RollbackOf: s.RollbackOf, AtOnce: s.AtOnce,
	}
	if s.Options != nil {
		r.Options = *s.Options
	}
	for i := start + 1; i < len(events); i++ {
		if events[i].Rollout == r.ID {
			r.apply(i, events[i])
		}
	}
	return r
}

func (r *Rollout) apply(i int, e Event) {
	if e.Spec != "" {
		r.SpecAt = e.Spec
	}
	switch e.Type {
	case EventWaveDone:
		if _, ok := r.WaveDone[e.Wave]; !ok {
			r.WaveDone[e.Wave] = i
		}
	case EventNodeDone:
		// A failure is sticky: a holder whose lease was taken over cannot
		// turn its failure into a success afterwards (fencing); nor can a
		// holding recorded lost count.
		if _, failed := r.Failed[e.Node]; !failed && !r.LostToken(e.Node, e.Lease) {
			r.Done[e.Node] = e.Lease
		}
	case EventNodeLost:
		if !r.LostToken(e.Node, e.Lease) {
			r.Lost[e.Node] = append(r.Lost[e.Node], e.Lease)
			r.LostAt[e.Node] = i
		}
	case EventNodeFailed:
		if !hasKey(r.Failed, e.Node) {
			r.FailedOrder = append(r.FailedOrder, e.Node)
		}
		r.Failed[e.Node] = e.Reason
		delete(r.Done, e.Node)
	case EventNodeUnreachable:
		if !r.terminal(e.Node) {
			r.Skipped[e.Node] = e.Reason
		}
	case EventNodeHeld:
		if !r.terminal(e.Node) {
			r.Held[e.Node] = e.Reason
		}
	case EventPaused:
		r.Paused = true
	case EventResumed:
		r.Paused, r.Resumed = false, i
	case EventOptionsChanged:
		if e.Options != nil {
			r.Options = *e.Options
		}
		if e.Waves != nil && e.Wave >= 0 && e.Wave <= len(r.Waves) {
			r.Waves = append(r.Waves[:e.Wave:e.Wave], e.Waves...)
		}
		if e.Stages != nil {
			r.Stages = cloneStages(e.Stages)
		}
	case EventApproved:
		r.Approvals = append(r.Approvals, RecordedApproval{Wave: WaveNumber(e.Wave), Commit: e.Commit, Reason: e.Reason, Index: i})
	case EventCompleted:
		r.Outcome = OutcomeCompleted
	case EventFailed:
		r.Outcome, r.Reason, r.FailedBy = OutcomeFailed, e.Reason, e.Node
	case EventRolledBack:
		r.Outcome, r.Rollback = OutcomeRolledBack, e.RollbackCommit
		if e.Reason != "" {
			r.Reason = e.Reason
		}
	case EventSuperseded:
		r.Outcome = OutcomeSuperseded
	}
}

// LostToken reports whether node's lease token was recorded lost.
func (r *Rollout) LostToken(node, token string) bool {
	return token != "" && slices.Contains(r.Lost[node], token)
}

// terminal reports whether a node has a verdict in this rollout.
func (r *Rollout) terminal(node string) bool {
	_, d := r.Done[node]
	_, f := r.Failed[node]
	_, s := r.Skipped[node]
	_, h := r.Held[node]
	return d || f || s || h
}

// failedInPlan lists the planned nodes that failed, in the order they did.
func (r *Rollout) failedInPlan() []string {
	var out []string
	for _, n := range r.FailedOrder {
		if r.WaveOf(n) >= 0 {
			out = append(out, n)
		}
	}
	return out
}

// Ended reports whether the rollout has an outcome.
func (r *Rollout) Ended() bool { return r.Outcome != OutcomeNone }

// WavesDone is how many waves, from the first, are recorded done.
func (r *Rollout) WavesDone() int {
	k := 0
	for ; k < len(r.Waves); k++ {
		if _, done := r.WaveDone[k]; !done {
			break
		}
	}
	return k
}

// WaveOf returns the wave index of node in the plan, or -1.
func (r *Rollout) WaveOf(node string) int {
	if p, ok := r.placeOf(node); ok {
		return p.wave
	}
	return -1
}

// WaveComplete reports whether every node of wave k has a verdict that lets
// the rollout move on: done, skipped, held, failed when failures do not
// stop it, or lost (its lease expired without a verdict: it is retried
// while the waves go on, and a silent node does not hold them up).
func (r *Rollout) WaveComplete(k int, rollbackOnFail bool) bool {
	for _, n := range r.Waves[k] {
		_, d := r.Done[n]
		_, s := r.Skipped[n]
		_, h := r.Held[n]
		_, f := r.Failed[n]
		_, l := r.Lost[n]
		if !d && !s && !h && !l && !(f && !rollbackOnFail) {
			return false
		}
	}
	return true
}

// Result summarises the rollout in the original design's shape.
func (r *Rollout) Result() *Result {
	res := &Result{Nodes: []NodeResult{}}
	for _, w := range r.Waves {
		for _, n := range w {
			res.Total++
			nr := NodeResult{Node: n}
			switch {
			case hasKey(r.Failed, n):
				res.Failed++
				nr.Outcome, nr.Reason = "failed", r.Failed[n]
			case hasKey(r.Done, n):
				res.Upgraded++
				nr.Outcome, nr.Version = "upgraded", r.Target
			case hasKey(r.Skipped, n):
				res.Skipped++
				nr.Outcome, nr.Reason = "skipped", r.Skipped[n]
			case hasKey(r.Held, n):
				res.Skipped++
				nr.Outcome, nr.Reason = "skipped", r.Held[n]
			case len(r.Lost[n]) > 0:
				res.Skipped++
				nr.Outcome, nr.Reason = "skipped", "lost its lease (went silent, no failure reported); it converges after the rollout"
			default:
				nr.Outcome = "pending"
			}
			res.Nodes = append(res.Nodes, nr)
		}
	}
	return res
}

// FailedTargets lists the versions of app that were rolled back or failed in
// a record, with the reason, newest last: `diff` warns when a change targets
// one of them again.
func FailedTargets(events []Event) map[string]string {
	out := map[string]string{}
	for i, e := range events {
		if e.Type != EventStarted {
			continue
		}
		r := fold(events, i)
		if r.Outcome == OutcomeFailed || r.Outcome == OutcomeRolledBack {
			out[r.Target] = r.Reason
		}
	}
	return out
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }
