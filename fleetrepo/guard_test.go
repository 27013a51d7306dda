package fleetrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetops/reconciler/fleetrepo/gittest"
	"github.com/fleetops/reconciler/reconciler"
)

// TestAppendGuardedOneTransaction: the lease ref moves after the server
// advertised its refs and before it updates any (a pre-receive hook moves
// it, as a concurrent renewal landing at that moment would): the record
// must not move either. This is the server's ref transaction at work, not
// the client's check of the advertisement (which passed). Without the
// atomic capability (atomicPushes false) git applies each command alone
// and the verdict lands beside a lease that moved: the race of issue 17
// bug 2's first half, which the guard closes.
func TestAppendGuardedOneTransaction(t *testing.T) {
	for _, atomic := range []bool{true, false} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			transports(t, nil, func(t *testing.T, url, bare string) {
				defer func(v bool) { atomicPushes = v }(atomicPushes)
				atomicPushes = atomic
				ctx := testContext(t)
				open := func(node string) *Shared {
					sh, err := OpenShared(ctx, SharedOptions{URL: url, Identity: Identity{Name: node}, Clock: newFakeClock()})
					if err != nil {
						t.Fatal(err)
					}
					return sh
				}
				a, o := open("a"), open("o")
				l0, err := a.Acquire(ctx, "web", 0, "a", "r1", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				l1, err := a.Renew(ctx, l0)
				if err != nil {
					t.Fatal(err)
				}
				guard, err := o.Leases(ctx, "web")
				if err != nil || len(guard) != 1 || guard[0].Token != l1.Token {
					t.Fatalf("observer's leases = %+v, %v", guard, err)
				}
				// The hook moves the slot back to a's first commit (any other
				// value would do) once the push is under way.
				hook := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\nunset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\nexec git --git-dir=%q update-ref %s %s %s\n",
					bare, leaseRef("web", 0), l0.Token, l1.Token)
				if err := os.WriteFile(filepath.Join(bare, "hooks", "pre-receive"), []byte(hook), 0o755); err != nil {
					t.Fatal(err)
				}
				err = o.AppendGuarded(ctx, "web", guard, func([]reconciler.Event) (*reconciler.Event, error) {
					return &reconciler.Event{Type: reconciler.EventNodeUnreachable, Rollout: "r1", Node: "a", Reason: "took no lease"}, nil
				})
				if got := gittest.RevParse(t, bare, leaseRef("web", 0).String()); got != l0.Token {
					t.Fatalf("the hook did not move the lease: %s", got)
				}
				_, recErr := gittest.RunGit(bare, "rev-parse", "--verify", "-q", RolloutPrefix+"web")
				landed := recErr == nil
				if atomic {
					if !errors.Is(err, ErrGuardMoved) || landed {
						t.Fatalf("atomic guarded append with the lease moved under it: %v (record written: %v); want ErrGuardMoved and no record", err, landed)
					}
					return
				}
				if !landed {
					t.Fatalf("without the atomic capability the record was not written (%v): this test no longer shows what atomic prevents", err)
				}
			})
		})
	}
}

// TestAppendGuardedNeedsAtomic: a server that does not advertise atomic
// pushes gets no push at all; the error is for a person.
func TestAppendGuardedNeedsAtomic(t *testing.T) {
	bare := gittest.NewBare(t, nil)
	gittest.Git(t, bare, "config", "receive.advertiseAtomic", "false")
	ctx := testContext(t)
	o, err := OpenShared(ctx, SharedOptions{URL: bare, Identity: Identity{Name: "o"}, Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	err = o.AppendGuarded(ctx, "web", []reconciler.Lease{{App: "web", Slot: 0}}, func([]reconciler.Event) (*reconciler.Event, error) {
		return &reconciler.Event{Type: reconciler.EventNodeUnreachable, Rollout: "r1", Node: "a"}, nil
	})
	if !errors.Is(err, ErrNoAtomicPush) || !NeedsPerson(err) {
		t.Fatalf("guarded append to a server without atomic pushes: %v, want ErrNoAtomicPush for a person", err)
	}
	if _, err := gittest.RunGit(bare, "rev-parse", "--verify", "-q", RolloutPrefix+"web"); err == nil {
		t.Fatal("the record was written")
	}
}
