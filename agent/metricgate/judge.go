package metricgate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/fleetops/reconciler/spec"
)

// ErrFailed is wrapped by every failure of a gate: a value out of bounds,
// no data, an unreachable Prometheus, a refused query.
var ErrFailed = errors.New("metric gate failed")

// Kinds of failure.
const (
	OutOfBounds = "out of bounds"
	NoData      = "no data"
	Unreachable = "unreachable"
	Refused     = "refused"
)

// Failure is a failed metric gate. Its message is a node's failure reason:
// the metric, the query, the value and the bound.
type Failure struct {
	Kind       string // OutOfBounds, NoData, Unreachable, Refused
	Metric     string
	Query      string
	Prometheus string        // credentials redacted
	Bound      string        // ">= 1 and <= 5"
	Value      float64       // OutOfBounds: the first value out of bounds
	Series     string        // OutOfBounds: its labels, {code="500", node="n1"}
	Out, Of    int           // OutOfBounds: how many series were out, of how many
	For        time.Duration // NoData, Unreachable: how long it was retried
	Err        error         // Unreachable, Refused: what Prometheus (or the network) said
}

func (f *Failure) Error() string {
	switch f.Kind {
	case OutOfBounds:
		value := model.SampleValue(f.Value).String()
		if math.IsNaN(f.Value) {
			value += " (not a number: 0/0, such as a ratio over no requests)"
		}
		series := ""
		if f.Of > 1 {
			series = fmt.Sprintf(" (%d of %d series out of bounds)", f.Out, f.Of)
		}
		return fmt.Sprintf("metric %s out of bounds: %s = %s%s, want %s%s", f.Metric, f.Query, value, f.Series, f.Bound, series)
	case NoData:
		return fmt.Sprintf("metric %s: no data: %s returned no series for %s from Prometheus %s (check the query and that Prometheus scrapes this node; where no series means zero, add \"or vector(0)\")",
			f.Metric, f.Query, f.For, f.Prometheus)
	case Refused:
		return fmt.Sprintf("metric %s: Prometheus %s refused %s: %v", f.Metric, f.Prometheus, f.Query, f.Err)
	}
	return fmt.Sprintf("metric %s: Prometheus %s unreachable for %s, so %s could not be measured: %v", f.Metric, f.Prometheus, f.For, f.Query, f.Err)
}

// Unwrap gives ErrFailed and the cause.
func (f *Failure) Unwrap() []error {
	if f.Err == nil {
		return []error{ErrFailed}
	}
	return []error{ErrFailed, f.Err}
}

// verdict reports whether asking again cannot change the failure.
func (f *Failure) verdict() bool { return f.Kind == OutOfBounds || f.Kind == Refused }

// sample is one series' value.
type sample struct {
	labels string
	value  float64
}

// samplesOf is the series of an instant query's answer: a vector's, or a
// scalar as one series without labels.
func samplesOf(v model.Value) ([]sample, error) {
	switch v := v.(type) {
	case model.Vector:
		out := make([]sample, 0, len(v))
		for _, s := range v {
			out = append(out, sample{labels: labelsOf(s.Metric), value: float64(s.Value)})
		}
		slices.SortFunc(out, func(a, b sample) int { return strings.Compare(a.labels, b.labels) })
		return out, nil
	case *model.Scalar:
		return []sample{{value: float64(v.Value)}}, nil
	case model.Matrix:
		return nil, errors.New("the query returns a range vector, want an instant vector or a scalar (wrap the range selector in a function such as rate(...[1m]))")
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("the query returns a %s, want an instant vector or a scalar", v.Type())
}

// labelsOf writes a series' labels as PromQL does, " " first so that it
// follows the value: ` {code="500"}`; "" for none.
func labelsOf(m model.Metric) string {
	if len(m) == 0 {
		return ""
	}
	return " " + m.String()
}

// judge checks every sample against m's bounds.
func judge(base Failure, m spec.Metric, samples []sample) *Failure {
	if len(samples) == 0 {
		base.Kind = NoData
		return &base
	}
	var first *sample
	out := 0
	for i, s := range samples {
		if !inBounds(m, s.value) {
			out++
			if first == nil {
				first = &samples[i]
			}
		}
	}
	if first == nil {
		return nil
	}
	base.Kind, base.Value, base.Series, base.Out, base.Of = OutOfBounds, first.value, first.labels, out, len(samples)
	return &base
}

// inBounds reports whether v is within m's bounds; NaN never is.
func inBounds(m spec.Metric, v float64) bool {
	if math.IsNaN(v) {
		return false
	}
	return (m.Max == nil || v <= *m.Max) && (m.Min == nil || v >= *m.Min)
}
