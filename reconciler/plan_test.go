package reconciler

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/fleetops/reconciler/spec"
)

// inventory6 is six nodes in two regions, listed out of order.
func inventory6() []NodeInfo {
	return []NodeInfo{
		{Name: "us-2", Labels: map[string]string{"region": "us"}},
		{Name: "eu-1", Labels: map[string]string{"region": "eu"}},
		{Name: "us-1", Labels: map[string]string{"region": "us"}},
		{Name: "eu-3", Labels: map[string]string{"region": "eu"}},
		{Name: "eu-2", Labels: map[string]string{"region": "eu"}},
		{Name: "us-3", Labels: map[string]string{"region": "us"}},
	}
}

func app(strategy string, batch, canary int, targets spec.Targets) spec.App {
	return spec.App{
		Name: "web", Version: "1.2.0", Nodes: targets,
		Rollout: spec.Rollout{Strategy: strategy, BatchSize: batch, Canary: spec.Canary{Count: canary}},
	}
}

func TestPlanWaves(t *testing.T) {
	all := spec.Targets{All: true}
	tests := []struct {
		name      string
		app       spec.App
		inventory []NodeInfo
		waves     [][]string
		unknown   []string
	}{
		{"rolling in batches", app("rolling", 4, 1, all), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3", "us-1"}, {"us-2", "us-3"}}, nil},
		{"rolling batch of one", app("rolling", 1, 1, spec.Targets{Selector: map[string]string{"region": "eu"}}), inventory6(),
			[][]string{{"eu-1"}, {"eu-2"}, {"eu-3"}}, nil},
		{"batchSize equals node count", app("rolling", 6, 1, all), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3"}}, nil},
		{"batchSize above node count", app("rolling", 10, 1, all), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3"}}, nil},
		{"batchSize 0 counts as 1", app("rolling", 0, 1, spec.Targets{Names: []string{"us-1", "eu-1"}}), inventory6(),
			[][]string{{"eu-1"}, {"us-1"}}, nil},
		{"canary then batches", app("canary", 2, 1, all), inventory6(),
			[][]string{{"eu-1"}, {"eu-2", "eu-3"}, {"us-1", "us-2"}, {"us-3"}}, nil},
		{"canary of two", app("canary", 3, 2, spec.Targets{Selector: map[string]string{"region": "us"}}), inventory6(),
			[][]string{{"us-1", "us-2"}, {"us-3"}}, nil},
		{"canary count equals nodes", app("canary", 3, 3, spec.Targets{Selector: map[string]string{"region": "eu"}}), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3"}}, nil},
		{"canary count above nodes", app("canary", 3, 9, spec.Targets{Selector: map[string]string{"region": "eu"}}), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3"}}, nil},
		{"all at once", app("all_at_once", 2, 1, all), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3", "us-1", "us-2", "us-3"}}, nil},
		{"unknown strategy plans as rolling", app("sideways", 5, 1, all), inventory6(),
			[][]string{{"eu-1", "eu-2", "eu-3", "us-1", "us-2"}, {"us-3"}}, nil},
		{"empty inventory", app("rolling", 3, 1, all), nil, [][]string{}, nil},
		{"empty target list", app("canary", 3, 1, spec.Targets{Names: []string{}}), inventory6(), [][]string{}, nil},
		{"selector matching nothing", app("all_at_once", 3, 1, spec.Targets{Selector: map[string]string{"region": "mars"}}), inventory6(),
			[][]string{}, nil},
		{"listed nodes unknown to the inventory", app("rolling", 2, 1, spec.Targets{Names: []string{"zz-9", "us-3", "aa-0", "eu-2", "zz-9"}}), inventory6(),
			[][]string{{"eu-2", "us-3"}}, []string{"aa-0", "zz-9"}},
		{"only unknown nodes", app("canary", 2, 1, spec.Targets{Names: []string{"x"}}), nil, [][]string{}, []string{"x"}},
		{"duplicate inventory entries", app("rolling", 2, 1, all), append(inventory6()[:2:2], inventory6()[1]),
			[][]string{{"eu-1", "us-2"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanWaves(tt.app, tt.inventory)
			if !reflect.DeepEqual(p.Waves, tt.waves) {
				t.Errorf("waves = %q, want %q", p.Waves, tt.waves)
			}
			if !reflect.DeepEqual(p.Unknown, tt.unknown) {
				t.Errorf("unknown = %q, want %q", p.Unknown, tt.unknown)
			}
			if p.App != "web" || p.Version != "1.2.0" || p.Strategy != tt.app.Rollout.Strategy {
				t.Errorf("plan header = %q %q %q", p.App, p.Version, p.Strategy)
			}
		})
	}
}

func TestPlanJSON(t *testing.T) {
	empty, _ := json.Marshal(PlanWaves(app("rolling", 3, 1, spec.Targets{Names: []string{}}), nil))
	if got, want := string(empty), `{"app":"web","version":"1.2.0","strategy":"rolling","waves":[]}`; got != want {
		t.Errorf("empty plan JSON = %s, want %s", got, want)
	}
	withUnknown, _ := json.Marshal(PlanWaves(app("rolling", 3, 1, spec.Targets{Names: []string{"eu-1", "x"}}), inventory6()))
	if got, want := string(withUnknown), `{"app":"web","version":"1.2.0","strategy":"rolling","waves":[["eu-1"]],"unknown":["x"]}`; got != want {
		t.Errorf("plan JSON = %s, want %s", got, want)
	}
}

func TestPlanDoesNotAliasInput(t *testing.T) {
	names := []string{"b", "a"}
	inv := []NodeInfo{{Name: "a"}, {Name: "b"}}
	p := PlanWaves(app("rolling", 1, 1, spec.Targets{Names: names}), inv)
	p.Waves[0][0] = "changed"
	if names[0] != "b" || names[1] != "a" || inv[0].Name != "a" {
		t.Errorf("PlanWaves changed its input: %v %v", names, inv)
	}
}

func TestInventory(t *testing.T) {
	got := Inventory(map[string]spec.Node{
		"b": {Labels: map[string]string{"tier": "edge"}},
		"a": {},
	})
	want := []NodeInfo{{Name: "a"}, {Name: "b", Labels: map[string]string{"tier": "edge"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Inventory = %+v, want %+v", got, want)
	}
}
