package etcdserver

import (
	"context"
	"errors"

	"github.com/k3s-io/kine/pkg/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peapod-dev/peapod/internal/storage"
)

// adapter presents a storage.Backend as kine's server.Backend.
type adapter struct {
	b storage.Backend
}

var _ server.Backend = adapter{}

// Start implements server.Backend. The storage.Backend is already running.
func (adapter) Start(context.Context) error { return nil }

func (a adapter) Get(ctx context.Context, key, rangeEnd string, limit, revision int64) (int64, *server.KeyValue, error) {
	rev, kv, err := a.b.Get(ctx, key, rangeEnd, limit, revision)
	return rev, toKV(kv), mapErr(err)
}

func (a adapter) Create(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	rev, err := a.b.Create(ctx, key, value, lease)
	return rev, mapErr(err)
}

func (a adapter) Delete(ctx context.Context, key string, revision int64) (int64, *server.KeyValue, bool, error) {
	rev, kv, ok, err := a.b.Delete(ctx, key, revision)
	return rev, toKV(kv), ok, mapErr(err)
}

func (a adapter) List(ctx context.Context, prefix, startKey string, limit, revision int64) (int64, []*server.KeyValue, error) {
	rev, kvs, err := a.b.List(ctx, prefix, startKey, limit, revision)
	if err != nil {
		return rev, nil, mapErr(err)
	}
	out := make([]*server.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = toKV(kv)
	}
	return rev, out, nil
}

func (a adapter) Count(ctx context.Context, prefix, startKey string, revision int64) (int64, int64, error) {
	rev, n, err := a.b.Count(ctx, prefix, startKey, revision)
	return rev, n, mapErr(err)
}

func (a adapter) Update(ctx context.Context, key string, value []byte, revision, lease int64) (int64, *server.KeyValue, bool, error) {
	rev, kv, ok, err := a.b.Update(ctx, key, value, revision, lease)
	return rev, toKV(kv), ok, mapErr(err)
}

func (a adapter) DbSize(ctx context.Context) (int64, error) {
	n, err := a.b.DbSize(ctx)
	return n, mapErr(err)
}

func (a adapter) CurrentRevision(ctx context.Context) (int64, error) {
	rev, err := a.b.CurrentRevision(ctx)
	return rev, mapErr(err)
}

func (a adapter) Compact(ctx context.Context, revision int64) (int64, error) {
	rev, err := a.b.Compact(ctx, revision)
	return rev, mapErr(err)
}

// Watch implements server.Backend, converting the event batches. kine's
// watcher reads Events until it is closed and only then looks at Errorc,
// so the error is passed on before Events is closed.
func (a adapter) Watch(ctx context.Context, key string, revision int64) server.WatchResult {
	wr := a.b.Watch(ctx, key, revision)
	res := server.WatchResult{CurrentRevision: wr.CurrentRevision, CompactRevision: wr.CompactRevision}
	if wr.Events == nil {
		return res
	}
	events := make(chan []*server.Event, 16)
	errc := make(chan error, 1)
	res.Events, res.Errorc = events, errc
	go func() {
		defer close(events)
		for batch := range wr.Events {
			select {
			case events <- toEvents(batch):
			case <-ctx.Done():
				// The watch is over; the backend closes wr.Events.
			}
		}
		select {
		case err := <-wr.Errorc:
			if err != nil {
				errc <- mapErr(err)
			}
		default:
		}
	}()
	return res
}

func toKV(kv *storage.KeyValue) *server.KeyValue {
	if kv == nil {
		return nil
	}
	return &server.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}

func toEvents(batch []*storage.Event) []*server.Event {
	out := make([]*server.Event, len(batch))
	for i, e := range batch {
		out[i] = &server.Event{Create: e.Create, Delete: e.Delete, KV: toKV(e.KV), PrevKV: toKV(e.PrevKV)}
	}
	return out
}

// mapErr turns storage's sentinel errors into the values kine's server
// compares against and the gRPC errors etcd clients recognise.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrKeyExists):
		return server.ErrKeyExists
	case errors.Is(err, storage.ErrCompacted):
		return server.ErrCompacted
	case errors.Is(err, storage.ErrFutureRev):
		return server.ErrFutureRev
	case errors.Is(err, storage.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, storage.ErrInvalidKey), errors.Is(err, storage.ErrValueTooLarge):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return err
}
