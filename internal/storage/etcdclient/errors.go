package etcdclient

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peapod-dev/peapod/internal/storage"
)

// Errors go through two steps, the two ends of the gRPC hop this package
// replaces, so callers get exactly the values they got over gRPC:
//
//   - serverError is what kine's server (with etcdserver's adapter) sends
//     for a Backend error: etcd's status errors for compaction, future
//     revisions and duplicate keys, a status with a fitting code for the
//     other sentinels, and codes.Unknown with the message for anything else
//     (which is what gRPC makes of a plain error).
//   - clientError is what clientv3 makes of that (its unexported toErr):
//     etcd's well-known errors become rpctypes.EtcdError values, comparable
//     with == (the apiserver's etcd3 store compares err ==
//     rpctypes.ErrCompacted), and a Canceled or DeadlineExceeded status
//     becomes the caller's ctx.Err() once the caller's context is done.
//
// The status errors made here also unwrap to the Backend's error, so
// errors.Is(err, storage.ErrClosed) works where gRPC would have lost it.

// grpcError is a gRPC status error that keeps the error it was made from.
type grpcError struct {
	code codes.Code
	err  error
}

func (e *grpcError) Error() string              { return e.GRPCStatus().Err().Error() }
func (e *grpcError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }
func (e *grpcError) Unwrap() error              { return e.err }

// errUnsupportedTxn is kine's answer to a transaction of a shape it does not
// implement (server.ErrNotSupported).
var errUnsupportedTxn = status.New(codes.InvalidArgument, "etcdserver: unsupported operations in txn request").Err()

// unsupported is kine's answer to a request field it does not implement.
func unsupported(field string) error {
	return status.New(codes.Unimplemented, field+" is not implemented by kine").Err()
}

// notSupported is kine's answer to an RPC it does not implement: a plain
// error, which reaches the client as codes.Unknown.
func notSupported(what string) error {
	return status.New(codes.Unknown, what+" is not supported").Err()
}

// serverError maps an error of the Backend (or of kine's request handling)
// to what kine's gRPC server would send.
func serverError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrKeyExists):
		return rpctypes.ErrGRPCDuplicateKey
	case errors.Is(err, storage.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, storage.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, storage.ErrClosed):
		return &grpcError{codes.Unavailable, err}
	case errors.Is(err, storage.ErrInvalidKey), errors.Is(err, storage.ErrValueTooLarge):
		return &grpcError{codes.InvalidArgument, err}
	case errors.Is(err, context.Canceled):
		return &grpcError{codes.Canceled, err}
	case errors.Is(err, context.DeadlineExceeded):
		return &grpcError{codes.DeadlineExceeded, err}
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return err
	}
	return &grpcError{codes.Unknown, err}
}

// clientError maps what the server sent to what clientv3 returns to a
// caller whose context is ctx.
func clientError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	err = rpctypes.Error(err)
	if _, ok := err.(rpctypes.EtcdError); ok {
		return err
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.DeadlineExceeded, codes.Canceled:
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
	}
	return err
}

// callError is what a caller of the in-process client gets for an error of
// the Backend.
func callError(ctx context.Context, err error) error {
	return clientError(ctx, serverError(err))
}
