package etcdclient

import (
	"bytes"
	"context"
	"errors"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"

	"github.com/peapod-dev/peapod/internal/storage"
)

// kv is the server side of the KV service: kine's pkg/server request
// handling (kv.go, get.go, list.go, create.go, update.go, delete.go,
// compact.go of kine v0.13.9) over a storage.Backend. The Kubernetes
// interface and the pb.KVClient below share it, so both answer exactly as
// kine's gRPC server does. Its methods return the Backend's errors
// unmapped.
type kv struct {
	b storage.Backend
}

// rangeResult is kine's RangeResponse.
type rangeResult struct {
	rev   int64
	kvs   []*storage.KeyValue
	more  bool
	count int64
}

// get reads one key (a range request without a range end).
func (s kv) get(ctx context.Context, key string, limit, revision int64) (rangeResult, error) {
	rev, kv, err := s.b.Get(ctx, key, "", limit, revision)
	res := rangeResult{rev: rev}
	if kv != nil {
		res.kvs = []*storage.KeyValue{kv}
		res.count = 1
	}
	return res, err
}

// listPrefix is the prefix kine lists for a range end: the end with its
// last byte decremented (undoing clientv3.GetPrefixRangeEnd), with a "/"
// appended when it does not end in one.
func listPrefix(rangeEnd []byte) string {
	p := bytes.Clone(rangeEnd)
	p[len(p)-1]--
	prefix := string(p)
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}

// list reads the keys of a range [key, rangeEnd), rangeEnd non-empty, the
// way kine does: the range end names the prefix, the start key loses its
// trailing NUL bytes (so a continue key "k\x00" lists after "k"), limit+1
// keys are read to know whether there are more, and when there are, the
// count is of the keys from the start key on, at the revision of the
// first read.
func (s kv) list(ctx context.Context, key, rangeEnd []byte, limit, revision int64, countOnly bool) (rangeResult, error) {
	if len(rangeEnd) == 0 {
		return rangeResult{}, errors.New("invalid range end length of 0")
	}
	prefix := listPrefix(rangeEnd)
	start := string(bytes.TrimRight(key, "\x00"))
	if countOnly {
		rev, count, err := s.b.Count(ctx, prefix, start, revision)
		return rangeResult{rev: rev, count: count}, err
	}
	lim := limit
	if lim > 0 {
		lim++
	}
	rev, kvs, err := s.b.List(ctx, prefix, start, lim, revision)
	res := rangeResult{rev: rev, kvs: kvs, count: int64(len(kvs))}
	if lim > 0 && res.count > limit {
		res.more = true
		res.kvs = kvs[:lim-1]
		if revision == 0 {
			revision = rev
		}
		res.rev, res.count, err = s.b.Count(ctx, prefix, start, revision)
	}
	return res, err
}

// rangeRequest serves a RangeRequest, refusing the fields kine refuses.
func (s kv) rangeRequest(ctx context.Context, r *pb.RangeRequest) (rangeResult, error) {
	switch {
	case r.KeysOnly:
		return rangeResult{}, unsupported("keysOnly")
	case r.MaxCreateRevision != 0:
		return rangeResult{}, unsupported("maxCreateRevision")
	case r.SortOrder != 0:
		return rangeResult{}, unsupported("sortOrder")
	case r.SortTarget != 0:
		return rangeResult{}, unsupported("sortTarget")
	case r.Serializable:
		return rangeResult{}, unsupported("serializable")
	case r.MinModRevision != 0:
		return rangeResult{}, unsupported("minModRevision")
	case r.MinCreateRevision != 0:
		return rangeResult{}, unsupported("minCreateRevision")
	case r.MaxModRevision != 0:
		return rangeResult{}, unsupported("maxModRevision")
	}
	if len(r.RangeEnd) == 0 {
		// (kine's get also refuses a limit with a range end, which cannot
		// happen here.)
		return s.get(ctx, string(r.Key), r.Limit, r.Revision)
	}
	return s.list(ctx, r.Key, r.RangeEnd, r.Limit, r.Revision, r.CountOnly)
}

// create writes key if absent. ok is false (with no error) when it exists.
func (s kv) create(ctx context.Context, key string, value []byte, lease int64) (rev int64, ok bool, err error) {
	rev, err = s.b.Create(ctx, key, value, lease)
	if errors.Is(err, storage.ErrKeyExists) {
		return rev, false, nil
	}
	return rev, err == nil, err
}

// writeResult is the outcome of an update or delete: on failure kv is the
// current version (nil when the key does not exist); on a successful
// delete it is the deleted version.
type writeResult struct {
	rev int64
	kv  *storage.KeyValue
	ok  bool
}

// update is kine's update: a compare on mod_revision with the current value
// read back on failure. Revision 0 means create-if-absent.
func (s kv) update(ctx context.Context, revision int64, key string, value []byte, lease int64) (writeResult, error) {
	if revision == 0 {
		rev, err := s.b.Create(ctx, key, value, lease)
		if errors.Is(err, storage.ErrKeyExists) {
			rev, kv, err := s.b.Get(ctx, key, "", 1, rev)
			return writeResult{rev: rev, kv: kv}, err
		}
		return writeResult{rev: rev, ok: true}, err
	}
	rev, kv, ok, err := s.b.Update(ctx, key, value, revision, lease)
	return writeResult{rev: rev, kv: kv, ok: ok}, err
}

// delete is kine's delete: unconditional when revision is 0.
func (s kv) delete(ctx context.Context, key string, revision int64) (writeResult, error) {
	rev, kv, ok, err := s.b.Delete(ctx, key, revision)
	return writeResult{rev: rev, kv: kv, ok: ok}, err
}

// The transaction shapes kine recognises (see kine's create.go, update.go,
// delete.go and compact.go).

func isCreate(txn *pb.TxnRequest) *pb.PutRequest {
	if len(txn.Compare) == 1 &&
		txn.Compare[0].Target == pb.Compare_MOD &&
		txn.Compare[0].Result == pb.Compare_EQUAL &&
		txn.Compare[0].GetModRevision() == 0 &&
		len(txn.Failure) == 0 &&
		len(txn.Success) == 1 &&
		txn.Success[0].GetRequestPut() != nil {
		return txn.Success[0].GetRequestPut()
	}
	return nil
}

func isUpdate(txn *pb.TxnRequest) (int64, string, []byte, int64, bool) {
	if len(txn.Compare) == 1 &&
		txn.Compare[0].Target == pb.Compare_MOD &&
		txn.Compare[0].Result == pb.Compare_EQUAL &&
		len(txn.Success) == 1 &&
		txn.Success[0].GetRequestPut() != nil &&
		len(txn.Failure) == 1 &&
		txn.Failure[0].GetRequestRange() != nil {
		return txn.Compare[0].GetModRevision(),
			string(txn.Compare[0].Key),
			txn.Success[0].GetRequestPut().Value,
			txn.Success[0].GetRequestPut().Lease,
			true
	}
	return 0, "", nil, 0, false
}

func isDelete(txn *pb.TxnRequest) (int64, string, bool) {
	if len(txn.Compare) == 0 &&
		len(txn.Failure) == 0 &&
		len(txn.Success) == 2 &&
		txn.Success[0].GetRequestRange() != nil &&
		txn.Success[1].GetRequestDeleteRange() != nil {
		return 0, string(txn.Success[1].GetRequestDeleteRange().Key), true
	}
	if len(txn.Compare) == 1 &&
		txn.Compare[0].Target == pb.Compare_MOD &&
		txn.Compare[0].Result == pb.Compare_EQUAL &&
		len(txn.Failure) == 1 &&
		txn.Failure[0].GetRequestRange() != nil &&
		len(txn.Success) == 1 &&
		txn.Success[0].GetRequestDeleteRange() != nil {
		return txn.Compare[0].GetModRevision(), string(txn.Success[0].GetRequestDeleteRange().Key), true
	}
	return 0, "", false
}

// isCompact matches the kube-apiserver compactor's transaction
// (k8s.io/apiserver/pkg/storage/etcd3/compact.go).
func isCompact(txn *pb.TxnRequest) bool {
	return len(txn.Compare) == 1 &&
		txn.Compare[0].Target == pb.Compare_VERSION &&
		txn.Compare[0].Result == pb.Compare_EQUAL &&
		len(txn.Success) == 1 &&
		txn.Success[0].GetRequestPut() != nil &&
		len(txn.Failure) == 1 &&
		txn.Failure[0].GetRequestRange() != nil &&
		string(txn.Compare[0].Key) == "compact_rev_key"
}

// toKV converts a Backend version to etcd's. The value is not copied:
// the Backend hands out values that are not modified afterwards (see the
// package documentation).
func toKV(kv *storage.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return &mvccpb.KeyValue{
		Key:            []byte(kv.Key),
		Value:          kv.Value,
		Lease:          kv.Lease,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
	}
}

// toKVs is kine's toKVs: nil for no versions or a nil first one.
func toKVs(kvs ...*storage.KeyValue) []*mvccpb.KeyValue {
	if len(kvs) == 0 || kvs[0] == nil {
		return nil
	}
	out := make([]*mvccpb.KeyValue, 0, len(kvs))
	for _, kv := range kvs {
		if kv != nil {
			out = append(out, toKV(kv))
		}
	}
	return out
}

func header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{Revision: rev}
}

// kvClient is the KV service as a pb.KVClient, handed to
// clientv3.NewKVFromKVClient: clientv3 turns its Ops into requests and the
// responses and errors into its own types exactly as it does over gRPC.
// Errors returned are the server's (serverError); clientv3 maps them.
type kvClient struct {
	kv
}

var _ pb.KVClient = kvClient{}

func (c kvClient) Range(ctx context.Context, r *pb.RangeRequest, _ ...grpc.CallOption) (*pb.RangeResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, serverError(err)
	}
	res, err := c.rangeRequest(ctx, r)
	if err != nil {
		return nil, serverError(err)
	}
	return &pb.RangeResponse{
		Header: header(res.rev),
		Kvs:    toKVs(res.kvs...),
		More:   res.more,
		Count:  res.count,
	}, nil
}

func (kvClient) Put(context.Context, *pb.PutRequest, ...grpc.CallOption) (*pb.PutResponse, error) {
	return nil, unsupported("put")
}

func (kvClient) DeleteRange(context.Context, *pb.DeleteRangeRequest, ...grpc.CallOption) (*pb.DeleteRangeResponse, error) {
	return nil, unsupported("delete")
}

func (c kvClient) Txn(ctx context.Context, txn *pb.TxnRequest, _ ...grpc.CallOption) (*pb.TxnResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, serverError(err)
	}
	if put := isCreate(txn); put != nil {
		return c.createTxn(ctx, put)
	}
	if rev, key, ok := isDelete(txn); ok {
		return c.deleteTxn(ctx, key, rev)
	}
	if rev, key, value, lease, ok := isUpdate(txn); ok {
		return c.updateTxn(ctx, rev, key, value, lease)
	}
	if isCompact(txn) {
		// A failed compare, so the apiserver's compactor never compacts:
		// the Backend compacts itself.
		return &pb.TxnResponse{
			Header: &pb.ResponseHeader{},
			Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{
				Header: &pb.ResponseHeader{},
				Kvs:    []*mvccpb.KeyValue{{}},
				Count:  1,
			}}}},
		}, nil
	}
	return nil, errUnsupportedTxn
}

func (c kvClient) createTxn(ctx context.Context, put *pb.PutRequest) (*pb.TxnResponse, error) {
	switch {
	case put.IgnoreLease:
		return nil, unsupported("ignoreLease")
	case put.IgnoreValue:
		return nil, unsupported("ignoreValue")
	case put.PrevKv:
		return nil, unsupported("prevKv")
	}
	rev, ok, err := c.create(ctx, string(put.Key), put.Value, put.Lease)
	if err != nil {
		return nil, serverError(err)
	}
	if !ok {
		return &pb.TxnResponse{Header: header(rev)}, nil
	}
	return &pb.TxnResponse{
		Header:    header(rev),
		Responses: []*pb.ResponseOp{putResponse(rev)},
		Succeeded: true,
	}, nil
}

func (c kvClient) updateTxn(ctx context.Context, revision int64, key string, value []byte, lease int64) (*pb.TxnResponse, error) {
	res, err := c.update(ctx, revision, key, value, lease)
	if err != nil {
		return nil, serverError(err)
	}
	resp := &pb.TxnResponse{Header: header(res.rev), Succeeded: res.ok}
	if res.ok {
		resp.Responses = []*pb.ResponseOp{putResponse(res.rev)}
	} else {
		resp.Responses = []*pb.ResponseOp{rangeResponse(res.rev, res.kv)}
	}
	return resp, nil
}

func (c kvClient) deleteTxn(ctx context.Context, key string, revision int64) (*pb.TxnResponse, error) {
	res, err := c.delete(ctx, key, revision)
	if err != nil {
		return nil, serverError(err)
	}
	if !res.ok {
		return &pb.TxnResponse{
			Header:    header(res.rev),
			Responses: []*pb.ResponseOp{rangeResponse(res.rev, res.kv)},
		}, nil
	}
	return &pb.TxnResponse{
		Header: header(res.rev),
		Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{
			Header:  header(res.rev),
			PrevKvs: toKVs(res.kv),
		}}}},
		Succeeded: true,
	}, nil
}

func putResponse(rev int64) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: header(rev)}}}
}

// rangeResponse is the else branch of an update or delete: the current
// version, with Count 1 even when there is none (as kine does).
func rangeResponse(rev int64, kv *storage.KeyValue) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{
		Header: header(rev),
		Kvs:    toKVs(kv),
		Count:  1,
	}}}
}

func (c kvClient) Compact(ctx context.Context, r *pb.CompactionRequest, _ ...grpc.CallOption) (*pb.CompactionResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, serverError(err)
	}
	rev, err := c.b.Compact(ctx, r.Revision)
	if err != nil {
		return nil, serverError(err)
	}
	return &pb.CompactionResponse{Header: header(rev)}, nil
}
