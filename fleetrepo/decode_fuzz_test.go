package fleetrepo

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/fleetops/reconciler/reconciler"
)

// The shared state's files (lease.json, event.json, report.json) are written
// by other nodes and read by every one: whatever bytes a ref points at,
// decoding must not panic, and what decodes must encode again (status and
// the CLI print it) to a fixed point: encode(decode(encode(decode(x)))) ==
// encode(decode(x)).

// roundTrip decodes data as readJSON does and checks the fixed point. It
// returns false when data does not decode.
func roundTrip[T any](t *testing.T, data []byte) (T, bool) {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, false
	}
	b1, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s decodes to %+v, which does not encode: %v", data, v, err)
	}
	var w T
	if err := json.Unmarshal(b1, &w); err != nil {
		t.Fatalf("%s decodes and encodes to %s, which does not decode: %v", data, b1, err)
	}
	b2, err := json.Marshal(w)
	if err != nil {
		t.Fatalf("%s: second encoding failed: %v", data, err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatalf("%s: encoding is not a fixed point:\n%s\n%s", data, b1, b2)
	}
	return v, true
}

// FuzzDecodeLease: lease.json, and the lease a reader makes of it.
func FuzzDecodeLease(f *testing.F) {
	f.Add([]byte(`{"app":"web","slot":0,"holder":"n1","rollout":"web-1.1.0-ab12cd34","acquired":"2026-03-01T10:00:00Z","renewed":"2026-03-01T10:00:20Z","ttl":30000000000}`))
	f.Add([]byte(`{"app":"web","slot":1,"ttl":30000000000,"note":"released"}`))
	f.Add([]byte(`{"app":"web","slot":2,"holder":"n2","ttl":-1,"note":"broken by operator","acquired":"0001-01-01T00:00:00+23:59"}`))
	f.Add([]byte(`{"slot":9223372036854775807,"ttl":9223372036854775807,"renewed":"9999-12-31T23:59:59.999999999-00:01"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, ok := roundTrip[leaseDoc](t, data)
		if !ok {
			return
		}
		l := reconciler.Lease{App: doc.App, Slot: doc.Slot, Holder: doc.Holder, Rollout: doc.Rollout,
			Acquired: doc.Acquired, Renewed: doc.Renewed, TTL: doc.TTL, Token: "0123456789abcdef0123456789abcdef01234567"}
		if _, ok := roundTrip[reconciler.Lease](t, mustJSON(t, l)); !ok {
			t.Fatalf("lease %+v from %s does not decode after encoding", l, data)
		}
		st := reconciler.LeaseStatusOf(l, time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC))
		if _, err := json.Marshal(st); err != nil {
			t.Fatalf("lease status of %s does not encode: %v", data, err)
		}
	})
}

// FuzzDecodeEvent: event.json, its commit message, and a record made of it.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"type":"started","rollout":"web-1.1.0-ab12cd34","by":"n1","time":"2026-03-01T10:00:00Z","target":"1.1.0","from":"1.0.0","waves":[["n1"],["n2","n3"]],"options":{"batchSize":2,"batchDelay":0}}`))
	f.Add([]byte(`{"type":"node_failed","rollout":"r","by":"n2","time":"2026-03-01T10:00:00Z","node":"n2","lease":"abc","reason":"health check: 503"}`))
	f.Add([]byte(`{"type":"options_changed","rollout":"r","by":"ops","time":"2026-03-01T10:00:00Z","wave":1,"waves":[["n4"]],"options":{"batchSize":1,"batchDelay":5000000000}}`))
	f.Add([]byte(`{"type":"completed","rollout":"r","by":"n3","time":"2026-03-01T10:00:00Z","result":{"total":1,"upgraded":1,"failed":0,"skipped":0,"nodes":[{"node":"n1","outcome":"upgraded","version":"1.1.0"}]}}`))
	f.Add([]byte(`{"type":"rolled_back","rollout":"r","by":"n1","time":"2026-03-01T10:00:00Z","rollbackCommit":"0123456789abcdef0123456789abcdef01234567","wave":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, ok := roundTrip[reconciler.Event](t, data)
		if !ok {
			return
		}
		_ = eventSummary("web", ev)
		started := reconciler.Event{Type: reconciler.EventStarted, Rollout: ev.Rollout, Waves: [][]string{{"n1"}, {"n2"}}}
		for _, events := range [][]reconciler.Event{{ev}, {started, ev}, {started, ev, ev}} {
			r := reconciler.Latest(events)
			if r == nil {
				continue
			}
			for k := range r.Waves {
				r.WaveComplete(k, true)
			}
			res := r.Result()
			pending := 0
			for _, n := range res.Nodes {
				if n.Outcome == "pending" {
					pending++
				}
			}
			if res.Upgraded+res.Failed+res.Skipped+pending != res.Total || res.Total != len(res.Nodes) {
				t.Fatalf("record %s: result %+v does not add up", data, res)
			}
			reconciler.FailedTargets(events)
		}
	})
}

// FuzzDecodeReport: report.json and its commit message.
func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{"node":"n1","labels":{"region":"eu"},"agentVersion":"0.9.0","time":"2026-03-01T10:00:00Z","specCommit":"0123456789abcdef0123456789abcdef01234567","apps":{"web":{"version":"1.1.0","previous":"1.0.0","state":"healthy","since":"2026-03-01T09:59:00Z","swap":"stop_start"}}}`))
	f.Add([]byte(`{"node":"n2","time":"2026-03-01T10:00:00Z","specError":"apps.web.version: want a string","untrusted":"untrusted: abc: unsigned","apps":{"web":{"state":"switching","target":"1.2.0","rollout":"r","lease":"abc","since":"2026-03-01T10:00:00.5+02:00","releases":[{"version":"1.1.0","status":"permanent"}]}}}`))
	f.Add([]byte(`{"node":"","time":"0001-01-01T00:00:00Z","apps":{"":{"state":"","since":"9999-12-31T23:59:59Z"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, ok := roundTrip[reconciler.NodeReport](t, data)
		if !ok {
			return
		}
		_ = Summary(r)
		if !sameButTime(r, r) {
			t.Fatalf("report %s differs from itself", data)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %+v: %v", v, err)
	}
	return b
}
