package spec

import (
	"encoding/json"
	"time"
)

// Defaults are applied in Go, not by CUE: the schema marks every field that
// has one optional (schema.cue), the checker requires every field the user
// wrote to be concrete, and a field the user did not write takes its default
// here. A CUE default would also resolve a value the user wrote but left
// incomplete (batchSize: _n with _n: int, a reference cycle), silently.

// defaultApp is an app with every default of docs/spec.md filled in.
func defaultApp() App {
	return App{
		Rollout: Rollout{
			Strategy:       StrategyRolling,
			BatchSize:      3,
			BatchDelay:     Duration{0},
			NodeTimeout:    Duration{60 * time.Second},
			RollbackOnFail: true,
			OnUnreachable:  OnUnreachableSkip,
			Approve:        ApproveNone,
			Canary:         Canary{Count: 1, Monitor: Duration{5 * time.Minute}},
		},
		Health: Health{
			RequiredStatus: RequiredStatusOK,
			Retries:        3,
			RetryDelay:     Duration{5 * time.Second},
		},
		Nodes: Targets{All: true},
	}
}

// UnmarshalJSON reads an app, taking the default of every field the JSON
// leaves out (artifact.signature: the artifact URL + ".sig").
func (a *App) UnmarshalJSON(b []byte) error {
	type plain App // without this method
	p := plain(defaultApp())
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if p.Artifact.Signature == "" && p.Artifact.URL != "" {
		p.Artifact.Signature = p.Artifact.URL + ".sig"
	}
	*a = App(p)
	return nil
}
