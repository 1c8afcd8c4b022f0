package etcdclient

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
)

// k8sKV implements kubernetes.Interface, the calls the kube-apiserver's
// etcd3 store makes for every request, straight over the Backend. Each
// method does what go.etcd.io/etcd/client/v3/kubernetes.Client builds
// (the range request or transaction), as kine's server answers it, and
// returns what that client would return, without building the requests.
type k8sKV struct {
	kv
}

var _ kubernetes.Interface = k8sKV{}

// Get is a range request for key with limit 1.
func (k k8sKV) Get(ctx context.Context, key string, opts kubernetes.GetOptions) (kubernetes.GetResponse, error) {
	if err := ctx.Err(); err != nil {
		return kubernetes.GetResponse{}, err
	}
	res, err := k.get(ctx, key, 1, opts.Revision)
	if err != nil {
		return kubernetes.GetResponse{}, callError(ctx, err)
	}
	resp := kubernetes.GetResponse{Revision: res.rev}
	if len(res.kvs) == 1 {
		resp.KV = toKV(res.kvs[0])
	}
	return resp, nil
}

// List is a range request from prefix (or opts.Continue) to the end of
// prefix, with opts.Limit.
func (k k8sKV) List(ctx context.Context, prefix string, opts kubernetes.ListOptions) (kubernetes.ListResponse, error) {
	if err := ctx.Err(); err != nil {
		return kubernetes.ListResponse{}, err
	}
	start := prefix
	if opts.Continue != "" {
		start = opts.Continue
	}
	res, err := k.list(ctx, []byte(start), []byte(clientv3.GetPrefixRangeEnd(prefix)), opts.Limit, opts.Revision, false)
	if err != nil {
		return kubernetes.ListResponse{}, callError(ctx, err)
	}
	return kubernetes.ListResponse{Kvs: toKVs(res.kvs...), Count: res.count, Revision: res.rev}, nil
}

// Count is a count-only range request with clientv3.WithPrefix.
func (k k8sKV) Count(ctx context.Context, prefix string, _ kubernetes.CountOptions) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	key, end := []byte(prefix), []byte(clientv3.GetPrefixRangeEnd(prefix))
	if prefix == "" {
		// What clientv3.WithPrefix does with an empty key.
		key, end = []byte{0}, []byte{0}
	}
	res, err := k.list(ctx, key, end, 0, 0, true)
	if err != nil {
		return 0, callError(ctx, err)
	}
	return res.count, nil
}

// OptimisticPut is the transaction "if mod_revision(key) == expectedRevision
// then put [else get]". kine serves it as a create when expectedRevision is
// 0 without GetOnFailure, as an update (create-if-absent for revision 0)
// with GetOnFailure, and refuses it otherwise.
func (k k8sKV) OptimisticPut(ctx context.Context, key string, value []byte, expectedRevision int64, opts kubernetes.PutOptions) (kubernetes.PutResponse, error) {
	if err := ctx.Err(); err != nil {
		return kubernetes.PutResponse{}, err
	}
	lease := int64(opts.LeaseID)
	if !opts.GetOnFailure {
		if expectedRevision != 0 {
			return kubernetes.PutResponse{}, clientError(ctx, errUnsupportedTxn)
		}
		rev, ok, err := k.create(ctx, key, value, lease)
		if err != nil {
			return kubernetes.PutResponse{}, callError(ctx, err)
		}
		return kubernetes.PutResponse{Succeeded: ok, Revision: rev}, nil
	}
	res, err := k.update(ctx, expectedRevision, key, value, lease)
	if err != nil {
		return kubernetes.PutResponse{}, callError(ctx, err)
	}
	resp := kubernetes.PutResponse{Succeeded: res.ok, Revision: res.rev}
	if !res.ok {
		resp.KV = toKV(res.kv)
	}
	return resp, nil
}

// OptimisticDelete is the transaction "if mod_revision(key) ==
// expectedRevision then delete [else get]". kine serves it only with
// GetOnFailure, and deletes unconditionally when expectedRevision is 0.
func (k k8sKV) OptimisticDelete(ctx context.Context, key string, expectedRevision int64, opts kubernetes.DeleteOptions) (kubernetes.DeleteResponse, error) {
	if err := ctx.Err(); err != nil {
		return kubernetes.DeleteResponse{}, err
	}
	if !opts.GetOnFailure {
		return kubernetes.DeleteResponse{}, clientError(ctx, errUnsupportedTxn)
	}
	res, err := k.delete(ctx, key, expectedRevision)
	if err != nil {
		return kubernetes.DeleteResponse{}, callError(ctx, err)
	}
	resp := kubernetes.DeleteResponse{Succeeded: res.ok, Revision: res.rev}
	if !res.ok {
		resp.KV = toKV(res.kv)
	}
	return resp, nil
}
