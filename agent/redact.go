package agent

import (
	"maps"

	"github.com/fleetops/reconciler/internal/redact"
	"github.com/fleetops/reconciler/reconciler"
)

// redactReport removes credentials from the free text of a node report (an
// error naming an artifact, health or repository URL) before it is served
// on /healthz or written to the shared refs every node reads.
func redactReport(r reconciler.NodeReport) reconciler.NodeReport {
	r.SpecError, r.Untrusted = redact.String(r.SpecError), redact.String(r.Untrusted)
	if r.Apps == nil {
		return r
	}
	r.Apps = maps.Clone(r.Apps)
	for name, app := range r.Apps {
		app.Error = redact.String(app.Error)
		r.Apps[name] = app
	}
	return r
}
