package fleetsim

import (
	"flag"
	"fmt"
	"github.com/fleetops/reconciler/reconciler"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var (
	seedFlag     = flag.Uint64("seed", 0, "replay this one seed (with -scenario)")
	seedsFlag    = flag.Int("seeds", 0, "seeds per scenario (default 380 calm and 30 of each other)")
	scenarioFlag = flag.String("scenario", "", "only this scenario: "+strings.Join(Scenarios, ", "))
	verboseSim   = flag.Bool("simlog", false, "print the event log of every seed run")
)

// safety are the kinds of violation TestSeeds fails on: issue 17's bugs
// 1, 2 and 7 (fixed on main) and the batch invariant. The liveness kinds
// (livelock, not-converged, rollback-commit) are open findings listed in
// docs/testing.md: make soak counts them, and FLEETSIM_STRICT=1 makes
// TestSeeds fail on them too.
var safety = map[string]bool{KindBatch: true, KindLowered: true, KindTakeover: true, KindExpired: true, KindStale: true, KindVerdict: true}

func failsOn(kind string) bool { return safety[kind] || os.Getenv("FLEETSIM_STRICT") == "1" }

func runSeed(t *testing.T, scenario string, seed uint64) Result {
	var res Result
	synctest.Test(t, func(t *testing.T) {
		res = Run(Config{Seed: seed, Scenario: scenario, Wait: synctest.Wait})
	})
	return res
}

func replay(scenario string, seed uint64) string {
	return fmt.Sprintf("go test ./internal/fleetsim -run 'TestSeeds/%s' -scenario=%s -seed=%d -simlog -v", scenario, scenario, seed)
}

// regressions are seeds beyond the first n that once violated an
// invariant, run by TestSeeds too: operator 23 and 533, a node that took a
// lease on reads older than its compare-and-swap (a lowered batch size
// recorded, or another slot taken, in between) and switched past the
// batch size (reconciler.Overfull).
var regressions = map[string][]uint64{"operator": {23, 533}}

// TestSeeds runs seeds of every scenario and checks the invariants of
// docs/testing.md after every step. A failing seed prints the command
// that replays it.
func TestSeeds(t *testing.T) {
	for _, sc := range Scenarios {
		// make test: 380 calm seeds and 30 of each of the 4 others (500); -short 20 of each.
		n := *seedsFlag
		if n == 0 {
			n = 30
			if sc == "calm" {
				n = 380
			}
			if testing.Short() {
				n = 20
			}
		}
		if *scenarioFlag != "" && sc != *scenarioFlag {
			continue
		}
		t.Run(sc, func(t *testing.T) {
			seeds := make([]uint64, 0, n)
			if *seedFlag != 0 {
				seeds = append(seeds, *seedFlag)
			} else {
				for i := range n {
					seeds = append(seeds, uint64(i+1))
				}
				for _, seed := range regressions[sc] {
					if seed > uint64(n) {
						seeds = append(seeds, seed)
					}
				}
			}
			failed := 0
			for _, seed := range seeds {
				res := runSeed(t, sc, seed)
				if *verboseSim {
					t.Logf("seed %d: %s; %d turns\n%s\n%s", seed, res.Params, res.Grants, strings.Join(res.Log, "\n"), res.Store)
				}
				var bad []Violation
				for _, v := range res.Violations {
					if failsOn(v.Kind) {
						bad = append(bad, v)
					} else if *seedFlag != 0 {
						t.Logf("open finding (not failed on): %s", v)
					}
				}
				if len(bad) == 0 {
					continue
				}
				failed++
				if failed <= 5 {
					t.Errorf("seed %d (%s): %d violations, first: %s\nreplay: %s", seed, res.Params, len(bad), bad[0], replay(sc, seed))
				}
			}
			if failed > 5 {
				t.Errorf("%d of %d seeds violated an invariant", failed, len(seeds))
			}
		})
	}
}

// TestReplayIsDeterministic: one seed run twice gives the same turns,
// log and store.
func TestReplayIsDeterministic(t *testing.T) {
	for seed := range uint64(12) {
		sc := Scenarios[seed%uint64(len(Scenarios))]
		a, b := runSeed(t, sc, seed+1), runSeed(t, sc, seed+1)
		if a.Grants != b.Grants || strings.Join(a.Log, "\n") != strings.Join(b.Log, "\n") || a.Store != b.Store {
			for i := range min(len(a.Log), len(b.Log)) {
				if a.Log[i] != b.Log[i] {
					t.Fatalf("%s seed %d ran differently twice (%d vs %d turns), from:\n%s\n%s", sc, seed+1, a.Grants, b.Grants, a.Log[i], b.Log[i])
				}
			}
			t.Fatalf("%s seed %d ran differently twice: %d vs %d turns", sc, seed+1, a.Grants, b.Grants)
		}
	}
}

// TestCalmSeedRollsOut: without faults a rollout completes and every
// node ends on the tip.
func TestCalmSeedRollsOut(t *testing.T) {
	start := time.Now()
	res := runSeed(t, "calm", 1)
	if len(res.Violations) != 0 {
		t.Fatalf("%v\n%s\n%s", res.Violations, strings.Join(res.Log, "\n"), res.Store)
	}
	if !strings.Contains(res.Store, "completed") {
		t.Fatalf("no rollout completed:\n%s\n%s", strings.Join(res.Log, "\n"), res.Store)
	}
	t.Logf("%s: %d turns in %s", res.Params, res.Grants, time.Since(start))
}

var (
	soakFlag  = flag.Int("soak", 0, "TestSoak: run this many seeds (round-robin over the scenarios) and print a summary")
	soakFor   = flag.Duration("soakfor", 0, "TestSoak: stop after this long (0: run every seed), summarising the seeds run")
	soakFirst = flag.Int("soakfirst", 1, "TestSoak: the first seed")
)

// TestSoak is make soak: many seeds, every scenario, a summary of the
// violations by kind with example seeds. It fails when any seed violates
// an invariant, after printing the summary.
func TestSoak(t *testing.T) {
	if *soakFlag == 0 {
		t.Skip("make soak runs it (-soak=N)")
	}
	type kindStat struct {
		seeds    int
		examples []string
	}
	stats := map[string]*kindStat{}
	bad, start := 0, time.Now()
	var slowest time.Duration
	var slowSeed string
	ran := 0
	for i := range *soakFlag {
		if *soakFor > 0 && time.Since(start) > *soakFor {
			break
		}
		ran++
		sc := Scenarios[i%len(Scenarios)]
		if *scenarioFlag != "" {
			sc = *scenarioFlag
		}
		seed := uint64(i + *soakFirst)
		t0 := time.Now()
		res := runSeed(t, sc, seed)
		if d := time.Since(t0); d > slowest {
			slowest, slowSeed = d, fmt.Sprintf("%s/%d", sc, seed)
		}
		if (i+1)%1000 == 0 {
			t.Logf("%d seeds, %d with violations, %s", i+1, bad, time.Since(start).Round(time.Second))
		}
		if len(res.Violations) == 0 {
			continue
		}
		bad++
		seen := map[string]bool{}
		for _, v := range res.Violations {
			if seen[v.Kind] {
				continue
			}
			seen[v.Kind] = true
			t.Logf("violation -scenario=%s -seed=%d: %s", sc, seed, v)
			st := stats[v.Kind]
			if st == nil {
				st = &kindStat{}
				stats[v.Kind] = st
			}
			st.seeds++
			if len(st.examples) < 5 {
				st.examples = append(st.examples, fmt.Sprintf("-scenario=%s -seed=%d: %s", sc, seed, v.Detail))
			}
		}
	}
	took := time.Since(start)
	var b strings.Builder
	fmt.Fprintf(&b, "%d seeds in %s (%s per seed, slowest %s %s): %d with violations\n", ran, took.Round(time.Millisecond),
		(took / time.Duration(max(ran, 1))).Round(time.Microsecond), slowSeed, slowest.Round(time.Millisecond), bad)
	for _, k := range slices.Sorted(maps.Keys(stats)) {
		fmt.Fprintf(&b, "  %-14s %5d seeds, e.g.\n", k, stats[k].seeds)
		for _, e := range stats[k].examples {
			fmt.Fprintf(&b, "      %s\n", e)
		}
	}
	t.Log("\n" + b.String())
	if out := os.Getenv("FLEETSIM_SOAK_REPORT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d seeds violated an invariant (replay one: go test ./internal/fleetsim -run 'TestSeeds/<scenario>' -scenario=<scenario> -seed=<seed> -simlog -v)", bad, ran)
	}
}

// TestCheckersCatch: each safety check fires on a history that breaks it
// (the checks themselves are tested, not only the code they watch).
func TestCheckersCatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &world{store: NewStore(), start: time.Now(), switching: map[string]*switchRec{}, holdingB: map[string]int{},
			commitIdx: map[string]int{}, nodes: map[string]*node{}}
		w.p = params{batch: 1, ttl: 30 * time.Second}
		w.initFleet()
		w.store.onWrite = w.onWrite
		ctx := t.Context()
		a := w.store.Handle("a", time.Now, nil)
		b := w.store.Handle("b", time.Now, nil)
		la, _ := a.Acquire(ctx, appName, 0, "a", "r1", 30*time.Second)
		w.switchBegins(&node{name: "a"}, 1, "1.1.0", la.Token)
		time.Sleep(31 * time.Second)
		if _, err := b.Leases(ctx, appName); err != nil { // b first sees a's lease now ...
			t.Fatal(err)
		}
		time.Sleep(31 * time.Second)
		if _, err := b.Acquire(ctx, appName, 0, "b", "r1", 30*time.Second); err != nil { // ... and takes it over a TTL later
			t.Fatal(err)
		}
		w.switchEnds(&node{name: "a"}, "done")
		// a's node_done under the taken-over token, counted.
		_ = a.Append(ctx, appName, func([]reconciler.Event) (*reconciler.Event, error) {
			return &reconciler.Event{Type: reconciler.EventStarted, Rollout: "r1", Target: "1.1.0", Waves: [][]string{{"a", "b"}}}, nil
		})
		_ = a.Append(ctx, appName, func([]reconciler.Event) (*reconciler.Event, error) {
			return &reconciler.Event{Type: reconciler.EventNodeDone, Rollout: "r1", Node: "a", By: "a", Lease: la.Token}, nil
		})
		kinds := map[string]bool{}
		for _, v := range w.violations {
			kinds[v.Kind] = true
		}
		for _, k := range []string{KindTakeover, KindExpired, KindStale} {
			if !kinds[k] {
				t.Errorf("no %s violation; got %v", k, w.violations)
			}
		}
		// Two switching on a batch of 1.
		w.violations = nil
		l1, _ := a.Acquire(ctx, appName, 1, "a", "r1", 30*time.Second)
		w.switchBegins(&node{name: "a"}, 1, "1.1.0", l1.Token)
		l0, _ := b.Leases(ctx, appName)
		w.switchBegins(&node{name: "b"}, 1, "1.1.0", l0[0].Token)
		if len(w.violations) == 0 || w.violations[0].Kind != KindLowered {
			t.Errorf("two switching with batchSize 1, one on slot 1: %v", w.violations)
		}
	})
}
