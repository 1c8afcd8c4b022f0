package etcdclient

import (
	"context"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/peapod-dev/peapod/internal/storage"
)

// lease is kine's Lease service (lease.go): Grant answers with a lease
// whose ID is its TTL in seconds and keeps no state (the Backend expires
// keys by the TTL they were written with); everything else is refused
// with kine's errors.
type lease struct{}

var _ clientv3.Lease = lease{}

func (lease) Grant(ctx context.Context, ttl int64) (*clientv3.LeaseGrantResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &clientv3.LeaseGrantResponse{ResponseHeader: &pb.ResponseHeader{}, ID: clientv3.LeaseID(ttl), TTL: ttl}, nil
}

func (lease) Revoke(context.Context, clientv3.LeaseID) (*clientv3.LeaseRevokeResponse, error) {
	return nil, notSupported("lease revoke")
}

func (lease) TimeToLive(context.Context, clientv3.LeaseID, ...clientv3.LeaseOption) (*clientv3.LeaseTimeToLiveResponse, error) {
	return nil, notSupported("lease time to live")
}

func (lease) Leases(context.Context) (*clientv3.LeaseLeasesResponse, error) {
	return nil, notSupported("lease leases")
}

// KeepAlive fails at once. (Over gRPC the stream fails instead, and
// clientv3 retries it until ctx is done without ever answering.)
func (lease) KeepAlive(context.Context, clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	return nil, notSupported("lease keep alive")
}

func (lease) KeepAliveOnce(context.Context, clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	return nil, notSupported("lease keep alive")
}

func (lease) Close() error { return nil }

// maintenance is kine's Maintenance service (maintenance.go): Status
// reports the Backend's size and the emulated etcd version, the rest is
// refused with kine's errors.
type maintenance struct {
	b storage.Backend
}

var _ clientv3.Maintenance = maintenance{}

// Status ignores endpoint: there is one in-process store.
func (m maintenance) Status(ctx context.Context, _ string) (*clientv3.StatusResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	size, err := m.b.DbSize(ctx)
	if err != nil {
		return nil, callError(ctx, err)
	}
	return &clientv3.StatusResponse{Header: &pb.ResponseHeader{}, DbSize: size, Version: EmulatedVersion}, nil
}

func (maintenance) AlarmList(context.Context) (*clientv3.AlarmResponse, error) {
	return nil, notSupported("alarm")
}

func (maintenance) AlarmDisarm(context.Context, *clientv3.AlarmMember) (*clientv3.AlarmResponse, error) {
	return nil, notSupported("alarm")
}

func (maintenance) Defragment(context.Context, string) (*clientv3.DefragmentResponse, error) {
	return nil, notSupported("defragment")
}

func (maintenance) HashKV(context.Context, string, int64) (*clientv3.HashKVResponse, error) {
	return nil, notSupported("hash kv")
}

func (maintenance) Snapshot(context.Context) (io.ReadCloser, error) {
	return nil, notSupported("snapshot")
}

func (maintenance) MoveLeader(context.Context, uint64) (*clientv3.MoveLeaderResponse, error) {
	return nil, notSupported("move leader")
}

// unsupportedService is the Cluster and Auth services, which the
// kube-apiserver does not use: every call fails with ErrNotSupported.
type unsupportedService struct{}

var (
	_ clientv3.Cluster = unsupportedService{}
	_ clientv3.Auth    = unsupportedService{}
)

// ErrNotSupported is returned by every method of the client's Cluster and
// Auth services (a gRPC status error with code Unimplemented).
var ErrNotSupported = status.New(codes.Unimplemented, "not supported by peapod's in-process etcd client").Err()

func (unsupportedService) MemberList(context.Context) (*clientv3.MemberListResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) MemberAdd(context.Context, []string) (*clientv3.MemberAddResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) MemberAddAsLearner(context.Context, []string) (*clientv3.MemberAddResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) MemberRemove(context.Context, uint64) (*clientv3.MemberRemoveResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) MemberUpdate(context.Context, uint64, []string) (*clientv3.MemberUpdateResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) MemberPromote(context.Context, uint64) (*clientv3.MemberPromoteResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) Authenticate(context.Context, string, string) (*clientv3.AuthenticateResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) AuthEnable(context.Context) (*clientv3.AuthEnableResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) AuthDisable(context.Context) (*clientv3.AuthDisableResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) AuthStatus(context.Context) (*clientv3.AuthStatusResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserAdd(context.Context, string, string) (*clientv3.AuthUserAddResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserAddWithOptions(context.Context, string, string, *clientv3.UserAddOptions) (*clientv3.AuthUserAddResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserDelete(context.Context, string) (*clientv3.AuthUserDeleteResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserChangePassword(context.Context, string, string) (*clientv3.AuthUserChangePasswordResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserGrantRole(context.Context, string, string) (*clientv3.AuthUserGrantRoleResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserGet(context.Context, string) (*clientv3.AuthUserGetResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserList(context.Context) (*clientv3.AuthUserListResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) UserRevokeRole(context.Context, string, string) (*clientv3.AuthUserRevokeRoleResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) RoleAdd(context.Context, string) (*clientv3.AuthRoleAddResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) RoleGrantPermission(context.Context, string, string, string, clientv3.PermissionType) (*clientv3.AuthRoleGrantPermissionResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) RoleGet(context.Context, string) (*clientv3.AuthRoleGetResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) RoleList(context.Context) (*clientv3.AuthRoleListResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) RoleRevokePermission(context.Context, string, string, string) (*clientv3.AuthRoleRevokePermissionResponse, error) {
	return nil, ErrNotSupported
}

func (unsupportedService) RoleDelete(context.Context, string) (*clientv3.AuthRoleDeleteResponse, error) {
	return nil, ErrNotSupported
}
