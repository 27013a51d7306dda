package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fleetops/reconciler/fleetrepo"
	"github.com/fleetops/reconciler/internal/etcdstore"
	"github.com/fleetops/reconciler/reconciler"
)

// TestAuth: with etcd's authentication on, the right user and password
// work; a wrong password, or a user whose role may not write the prefix,
// is an error for a person (NeedsPerson, ErrRejected), never transient.
func TestAuth(t *testing.T) {
	c := cluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := rawClient(t, c)
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "fleet"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "fleet", "/reconciler/", clientv3.GetPrefixRangeEnd("/reconciler/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "agent", "agentpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "agent", "fleet"); return err },
		func() error { _, err := admin.UserAdd(ctx, "reader", "readerpw"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	good := open(t, c, "a", etcdstore.Options{Username: "agent", Password: "agentpw"})
	if _, err := good.Acquire(ctx, "web", 0, "a", "r1", time.Minute); err != nil {
		t.Fatalf("the agent user acquires: %v", err)
	}
	if err := good.WriteReport(ctx, reconciler.NodeReport{Node: "a"}); err != nil {
		t.Fatalf("the agent user reports: %v", err)
	}
	for name, opts := range map[string]etcdstore.Options{
		"wrong password":      {Username: "agent", Password: "nope", OpTimeout: 3 * time.Second},
		"no write permission": {Username: "reader", Password: "readerpw", OpTimeout: 3 * time.Second},
	} {
		opts.Endpoints = c.Endpoints()
		st, err := etcdstore.Open(opts)
		if err == nil {
			_, err = st.Acquire(ctx, "web", 1, "b", "r1", time.Minute)
			st.Close()
		}
		if err == nil || !fleetrepo.NeedsPerson(err) || fleetrepo.IsTransient(err) || !errors.Is(err, fleetrepo.ErrRejected) {
			t.Errorf("%s: acquire = %v, want an error for a person", name, err)
		}
	}
}
