package spec

import "testing"

func TestTargetsMatch(t *testing.T) {
	eu := map[string]string{"region": "eu", "tier": "edge"}
	tests := []struct {
		name    string
		targets Targets
		node    string
		labels  map[string]string
		want    bool
	}{
		{"all", Targets{All: true}, "a", nil, true},
		{"zero value is all", Targets{}, "a", nil, true},
		{"listed", Targets{Names: []string{"b", "a"}}, "a", nil, true},
		{"not listed", Targets{Names: []string{"b"}}, "a", eu, false},
		{"empty list", Targets{Names: []string{}}, "a", eu, false},
		{"selector matches", Targets{Selector: map[string]string{"region": "eu"}}, "a", eu, true},
		{"selector needs every label", Targets{Selector: map[string]string{"region": "eu", "tier": "core"}}, "a", eu, false},
		{"selector on missing label", Targets{Selector: map[string]string{"zone": ""}}, "a", eu, false},
		{"empty selector", Targets{Selector: map[string]string{}}, "a", nil, true},
	}
	for _, tt := range tests {
		if got := tt.targets.Match(tt.node, tt.labels); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
		if got := tt.targets.Matcher()(tt.node, tt.labels); got != tt.want {
			t.Errorf("%s: Matcher = %v, want %v", tt.name, got, tt.want)
		}
	}
}
