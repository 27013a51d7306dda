package main

import (
	"context"
	"fmt"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := "/reconciler/rollouts/"
	resp, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithCountOnly())
	if err != nil {
		panic(err)
	}
	fmt.Println("record keys:", resp.Count)
	r2, err := cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(40))
	if err != nil {
		panic(err)
	}
	for i := len(r2.Kvs) - 1; i >= 0; i-- {
		kv := r2.Kvs[i]
		v := string(kv.Value)
		if len(v) > 300 {
			v = v[:300]
		}
		fmt.Println(string(kv.Key), kv.ModRevision, v)
	}
	w, err := cli.Get(ctx, "/reconciler/wakes/", clientv3.WithPrefix())
	if err == nil {
		for _, kv := range w.Kvs {
			fmt.Println(string(kv.Key), kv.ModRevision, kv.Version, string(kv.Value))
		}
	}
}
