package reconciler

import (
	"reflect"
	"testing"

	"github.com/fleetops/reconciler/spec"
)

func TestDiffHolds(t *testing.T) {
	base := &spec.Fleet{Nodes: map[string]spec.Node{
		"a": {}, "b": {Hold: true}, "c": {Pin: map[string]string{"web": "1.0.0", "api": "2.0.0"}}, "gone": {Hold: true},
	}}
	head := &spec.Fleet{Nodes: map[string]spec.Node{
		"a": {Hold: true}, "b": {}, "c": {Pin: map[string]string{"web": "1.1.0", "db": "3"}}, "new": {Labels: map[string]string{"x": "y"}},
	}}
	want := []HoldChange{
		{Node: "a", Changes: []string{"held (takes no upgrade; rollbacks still apply)"}},
		{Node: "b", Changes: []string{"hold lifted"}},
		{Node: "c", Changes: []string{"unpins api (was 2.0.0)", "pins db to 3", "pins web to 1.1.0 (was 1.0.0)"}},
		{Node: "gone", Changes: []string{"hold lifted"}},
	}
	if got := DiffHolds(base, head); !reflect.DeepEqual(got, want) {
		t.Fatalf("holds = %+v\nwant %+v", got, want)
	}
	if got := DiffHolds(head, head); got != nil {
		t.Fatalf("no change: %+v", got)
	}
}
