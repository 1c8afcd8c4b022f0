package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peapod-dev/peapod/internal/storage"
)

// TestCallError checks the mapping of Backend errors to what a caller of
// the client gets.
func TestCallError(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	plain := errors.New("disk on fire")
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		// is is the value the result must equal (==), if set.
		is error
		// code and msg describe a status error otherwise.
		code codes.Code
		msg  string
		// unwraps is an error the result must wrap.
		unwraps error
	}{
		{name: "nil", ctx: live},
		{name: "compacted", ctx: live, err: storage.ErrCompacted, is: rpctypes.ErrCompacted},
		{name: "wrapped compacted", ctx: live, err: fmt.Errorf("read: %w", storage.ErrCompacted), is: rpctypes.ErrCompacted},
		{name: "future revision", ctx: live, err: storage.ErrFutureRev, is: rpctypes.ErrFutureRev},
		{name: "key exists", ctx: live, err: storage.ErrKeyExists, is: rpctypes.ErrDuplicateKey},
		{name: "closed", ctx: live, err: storage.ErrClosed, code: codes.Unavailable, msg: "storage: backend closed", unwraps: storage.ErrClosed},
		{name: "invalid key", ctx: live, err: storage.ErrInvalidKey, code: codes.InvalidArgument, msg: "storage: invalid key", unwraps: storage.ErrInvalidKey},
		{name: "value too large", ctx: live, err: fmt.Errorf("%w: 5 bytes", storage.ErrValueTooLarge), code: codes.InvalidArgument, msg: "storage: value too large: 5 bytes", unwraps: storage.ErrValueTooLarge},
		{name: "other", ctx: live, err: plain, code: codes.Unknown, msg: "disk on fire", unwraps: plain},
		{name: "canceled, caller's context done", ctx: cancelled, err: context.Canceled, is: context.Canceled},
		{name: "canceled, caller's context live", ctx: live, err: context.Canceled, code: codes.Canceled, msg: "context canceled"},
		{name: "deadline, caller's context done", ctx: cancelled, err: context.DeadlineExceeded, is: context.Canceled},
		{name: "deadline, caller's context live", ctx: live, err: context.DeadlineExceeded, code: codes.DeadlineExceeded, msg: "context deadline exceeded"},
		{name: "kine's refusal", ctx: live, err: errUnsupportedTxn, code: codes.InvalidArgument, msg: "etcdserver: unsupported operations in txn request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := callError(tc.ctx, tc.err)
			switch {
			case tc.err == nil:
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
			case tc.is != nil:
				if got != tc.is {
					t.Fatalf("got %#v, want %#v", got, tc.is)
				}
			default:
				s, ok := status.FromError(got)
				if !ok || s.Code() != tc.code || s.Message() != tc.msg {
					t.Fatalf("got %v (status %v), want code %s message %q", got, s, tc.code, tc.msg)
				}
				if want := status.New(tc.code, tc.msg).Err().Error(); got.Error() != want {
					t.Fatalf("message %q, want %q", got.Error(), want)
				}
				if tc.unwraps != nil && !errors.Is(got, tc.unwraps) {
					t.Fatalf("%v does not wrap %v", got, tc.unwraps)
				}
			}
		})
	}
}

// faultBackend fails the calls of a real Backend with an injected error.
type faultBackend struct {
	storage.Backend
	err atomic.Pointer[error]
}

func (f *faultBackend) fail() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *faultBackend) Get(ctx context.Context, key, rangeEnd string, limit, revision int64) (int64, *storage.KeyValue, error) {
	if err := f.fail(); err != nil {
		return 0, nil, err
	}
	return f.Backend.Get(ctx, key, rangeEnd, limit, revision)
}

func (f *faultBackend) List(ctx context.Context, prefix, startKey string, limit, revision int64) (int64, []*storage.KeyValue, error) {
	if err := f.fail(); err != nil {
		return 0, nil, err
	}
	return f.Backend.List(ctx, prefix, startKey, limit, revision)
}

func (f *faultBackend) Create(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	if err := f.fail(); err != nil {
		return 0, err
	}
	return f.Backend.Create(ctx, key, value, lease)
}

func (f *faultBackend) Update(ctx context.Context, key string, value []byte, revision, lease int64) (int64, *storage.KeyValue, bool, error) {
	if err := f.fail(); err != nil {
		return 0, nil, false, err
	}
	return f.Backend.Update(ctx, key, value, revision, lease)
}

func (f *faultBackend) Delete(ctx context.Context, key string, revision int64) (int64, *storage.KeyValue, bool, error) {
	if err := f.fail(); err != nil {
		return 0, nil, false, err
	}
	return f.Backend.Delete(ctx, key, revision)
}

func (f *faultBackend) DbSize(ctx context.Context) (int64, error) {
	if err := f.fail(); err != nil {
		return 0, err
	}
	return f.Backend.DbSize(ctx)
}

// TestInjectedErrors makes the Backend fail each kind of call with each
// kind of error and checks that the in-process client returns what the
// gRPC client returns through kine's server. (ErrClosed is left out: the
// gRPC client retries reads that fail with Unavailable for a long time;
// TestCallError covers it.)
func TestInjectedErrors(t *testing.T) {
	inFault := &faultBackend{Backend: openStore(t)}
	grpcFault := &faultBackend{Backend: openStore(t)}
	in := newTestClient(t, inFault, 0)
	remote := startGRPC(t, grpcFault)
	ctx := testCtx(t)
	calls := []struct {
		name string
		call func(c *kubernetes.Client) error
	}{
		{"get", func(c *kubernetes.Client) error {
			_, err := c.Kubernetes.Get(ctx, "/registry/pods/ns/a", kubernetes.GetOptions{})
			return err
		}},
		{"list", func(c *kubernetes.Client) error {
			_, err := c.Kubernetes.List(ctx, "/registry/pods/", kubernetes.ListOptions{Limit: 5})
			return err
		}},
		{"create", func(c *kubernetes.Client) error {
			_, err := c.Kubernetes.OptimisticPut(ctx, "/registry/pods/ns/a", []byte("a"), 0, kubernetes.PutOptions{})
			return err
		}},
		{"update", func(c *kubernetes.Client) error {
			_, err := c.Kubernetes.OptimisticPut(ctx, "/registry/pods/ns/a", []byte("a"), 3, kubernetes.PutOptions{GetOnFailure: true})
			return err
		}},
		{"delete", func(c *kubernetes.Client) error {
			_, err := c.Kubernetes.OptimisticDelete(ctx, "/registry/pods/ns/a", 3, kubernetes.DeleteOptions{GetOnFailure: true})
			return err
		}},
		{"kv get", func(c *kubernetes.Client) error {
			_, err := c.KV.Get(ctx, "/registry/pods/ns/a")
			return err
		}},
		{"status", func(c *kubernetes.Client) error {
			ep := Endpoint
			if eps := c.Endpoints(); len(eps) > 0 {
				ep = eps[0]
			}
			_, err := c.Status(ctx, ep)
			return err
		}},
	}
	errs := []error{
		storage.ErrCompacted,
		storage.ErrFutureRev,
		storage.ErrInvalidKey,
		fmt.Errorf("%w: 9 bytes", storage.ErrValueTooLarge),
		errors.New("disk on fire"),
	}
	for _, injected := range errs {
		inFault.err.Store(&injected)
		grpcFault.err.Store(&injected)
		for _, c := range calls {
			a, b := descErr(c.call(in)), descErr(c.call(remote))
			if a != b {
				t.Errorf("%s failing with %v:\n  in-process: %s\n  gRPC:       %s", c.name, injected, a, b)
			}
		}
	}
}
