package spec

import "cuelang.org/go/cue"

// checkStages checks rollout.stages, a list of #Stage: each element as a
// struct of the schema (field names, values, @check rules), by index over
// the list as written, as checkMetrics does.
func (c *checker) checkStages(v cue.Value) {
	n, err := c.user.LookupPath(v.Path()).Len().Int64()
	if err != nil {
		return // not a list: the schema reports it
	}
	for i := range int(n) {
		c.walk(v.LookupPath(cue.MakePath(cue.Index(i))), c.stage)
	}
}

// checkStageNodes checks a stage's nodes as an app's targets are checked
// (names valid, no open list or bare pattern), except that a selector
// matching no declared node is no error: a stage that matches no targeted
// node is dropped from the plan, which plan and diff show.
func (c *checker) checkStageNodes(v cue.Value) {
	if c.abstractTargets(v) {
		return
	}
	if v.Kind() == cue.ListKind {
		c.checkTargetList(v)
	}
}
