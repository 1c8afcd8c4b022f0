package etcdclient

import (
	"context"
	"fmt"
	"testing"

	"go.etcd.io/etcd/client/v3/kubernetes"
)

// BenchmarkClient compares the in-process client with a gRPC client of
// package etcdserver over the same kind of store, for the reads and the
// conditional writes the kube-apiserver makes. Writes include the store's
// fsync; run with -benchmem and compare allocations and CPU.
func BenchmarkClient(b *testing.B) {
	for _, kind := range []string{"in-process", "gRPC"} {
		b.Run(kind, func(b *testing.B) {
			store := openStore(b)
			var c *kubernetes.Client
			if kind == "gRPC" {
				c = startGRPC(b, store)
			} else {
				c = New(context.Background(), store, nil)
				b.Cleanup(func() { _ = c.Close() })
			}
			ctx := context.Background()
			value := make([]byte, 2048)
			for i := range 100 {
				if _, err := c.Kubernetes.OptimisticPut(ctx, fmt.Sprintf("/registry/pods/ns/p%03d", i), value, 0, kubernetes.PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("Get", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Kubernetes.Get(ctx, "/registry/pods/ns/p042", kubernetes.GetOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("List100", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Kubernetes.List(ctx, "/registry/pods/", kubernetes.ListOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Update", func(b *testing.B) {
				b.ReportAllocs()
				r, err := c.Kubernetes.Get(ctx, "/registry/pods/ns/p007", kubernetes.GetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				rev := r.KV.ModRevision
				for b.Loop() {
					r, err := c.Kubernetes.OptimisticPut(ctx, "/registry/pods/ns/p007", value, rev, kubernetes.PutOptions{GetOnFailure: true})
					if err != nil || !r.Succeeded {
						b.Fatal(r, err)
					}
					rev = r.Revision
				}
			})
		})
	}
}
