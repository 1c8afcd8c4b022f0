// Package storage defines peapod's key-value store seam: the Backend
// interface that the embedded etcd v3 API (see package etcdserver) is served
// from, together with the value types and sentinel errors it uses.
//
// The model is an MVCC log shaped like etcd's and kine's: every successful
// write is assigned the next revision of a single store-wide counter, and
// the history of recent revisions can be read back and watched. Its method
// set mirrors kine's server.Backend so that adapting it is a field-for-field
// copy; package storagetest pins the contract with a test suite that every
// implementation must pass.
package storage

import (
	"context"
	"errors"
)

var (
	// ErrKeyExists is returned by Create when the key already has a live value.
	ErrKeyExists = errors.New("storage: key exists")
	// ErrCompacted is returned when a read or watch asks for a revision at or
	// below the compact revision, whose history is no longer kept.
	ErrCompacted = errors.New("storage: required revision has been compacted")
	// ErrFutureRev is returned when a read or compaction asks for a revision
	// above the current revision.
	ErrFutureRev = errors.New("storage: required revision is a future revision")
	// ErrClosed is returned when an operation is attempted on, or interrupted
	// by, a closed Backend.
	ErrClosed = errors.New("storage: backend closed")
	// ErrInvalidKey is returned when a write names an empty key or one longer
	// than the backend can store.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrValueTooLarge is returned when a write carries a value larger than the
	// backend can store.
	ErrValueTooLarge = errors.New("storage: value too large")
	// ErrWatchTooSlow is delivered on WatchResult.Errorc when a watcher fell
	// so far behind the writers that its buffer overflowed; its Events channel
	// is closed and the client is expected to watch again from the revision
	// after the last event it received.
	ErrWatchTooSlow = errors.New("storage: watcher fell too far behind and was closed")
)

// KeyValue is one version of a key.
type KeyValue struct {
	Key string
	// CreateRevision is the revision at which this incarnation of the key was
	// created.
	CreateRevision int64
	// ModRevision is the revision of the write that produced this version.
	ModRevision int64
	Value       []byte
	// Lease is the lease the version was written with. peapod's etcd API
	// grants leases whose ID equals their TTL in seconds (as kine does), so a
	// non-zero Lease is also the number of seconds after the write at which
	// the key expires.
	Lease int64
}

// Event is one change delivered by Watch.
type Event struct {
	// Create is set when the key did not exist (or was deleted) before.
	Create bool
	// Delete is set when the change removed the key. KV then describes the
	// removed value with ModRevision set to the deleting revision.
	Delete bool
	// KV is the key after the change.
	KV *KeyValue
	// PrevKV is the version the change replaced; nil for creations.
	PrevKV *KeyValue
}

// WatchResult is what Watch returns.
type WatchResult struct {
	// CurrentRevision is the store's revision when the watch was set up.
	CurrentRevision int64
	// CompactRevision is non-zero only when the watch failed because its
	// start revision has been compacted; Events is then nil.
	CompactRevision int64
	// Events delivers batches of events in revision order. It is closed when
	// the watch ends (its context is cancelled, the backend is closed, or an
	// error occurs).
	Events <-chan []*Event
	// Errorc receives at most one error explaining why Events was closed when
	// the watch did not simply end by cancellation. The error is sent before
	// Events is closed, so a reader that sees Events closed can check Errorc
	// without blocking.
	Errorc <-chan error
}

// Backend is an MVCC key-value store with a single store-wide revision
// counter. It is safe for concurrent use.
//
// Contract:
//
//   - Revisions strictly increase across all keys. The first successful
//     write to an empty store has revision 1, and every successful write
//     (Create, Update, Delete, or a TTL expiry) gets a revision larger than
//     every earlier one. Failed or conditional-mismatch writes consume no
//     revision.
//   - Keys are matched the way kine does: a prefix that ends in "/" matches
//     every key beginning with it; any other prefix matches exactly the key
//     it names. A non-empty startKey (other than the prefix itself) is
//     exclusive: only keys sorting strictly after it are returned or
//     counted. (kine's server strips the trailing NUL byte of the
//     apiserver's continue keys, so "after the last key returned" is what
//     a continued list asks for.)
//   - Reads take a revision: 0 means the current state, an older revision
//     means the state as of that revision. A revision at or below the compact
//     revision fails with ErrCompacted; one above the current revision fails
//     with ErrFutureRev. Reads return the revision they were served at: the
//     requested revision when non-zero, otherwise the current one.
//   - Writes return the revision of the write on success, and the current
//     revision when the write was not applied.
//   - Lease, when non-zero, is a TTL in seconds; the key is deleted (through
//     the normal write path, producing a delete event) once the TTL has passed
//     since the write, unless it was updated or deleted before.
type Backend interface {
	// Get returns the live value of key at revision, or a nil KeyValue when
	// the key did not exist then. rangeEnd and limit are accepted for
	// compatibility with kine's interface and ignored: Get reads one key.
	Get(ctx context.Context, key, rangeEnd string, limit, revision int64) (int64, *KeyValue, error)
	// Create writes key if it has no live value, and fails with ErrKeyExists
	// (returning the current revision) otherwise.
	Create(ctx context.Context, key string, value []byte, lease int64) (int64, error)
	// Update replaces key's value if its live version has ModRevision equal to
	// revision. Otherwise it reports ok=false, with the current version of the
	// key (nil when it does not exist) and the current revision.
	Update(ctx context.Context, key string, value []byte, revision, lease int64) (rev int64, kv *KeyValue, ok bool, err error)
	// Delete removes key if its live version has ModRevision equal to
	// revision, or unconditionally when revision is 0, and returns the removed
	// version. On a mismatch it reports ok=false with the current version. A
	// missing key reports ok=false with a nil KeyValue when revision is
	// non-zero (as etcd's compare on mod_revision would) and ok=true with a
	// nil KeyValue when revision is 0.
	Delete(ctx context.Context, key string, revision int64) (rev int64, kv *KeyValue, ok bool, err error)
	// List returns the live keys matching prefix after startKey, in key order,
	// at most limit of them when limit > 0.
	List(ctx context.Context, prefix, startKey string, limit, revision int64) (int64, []*KeyValue, error)
	// Count returns how many live keys List would return without a limit.
	Count(ctx context.Context, prefix, startKey string, revision int64) (rev int64, count int64, err error)
	// Watch delivers, in revision order and in batches, every change to keys
	// matching prefix whose revision is >= revision; revision <= 0 means
	// changes after the current revision. If revision is at or below the
	// compact revision the watch fails: the result has CompactRevision and
	// CurrentRevision set and no Events channel. The watch ends when ctx is
	// done.
	Watch(ctx context.Context, prefix string, revision int64) WatchResult
	// CurrentRevision returns the revision of the latest write (0 when the
	// store has never been written).
	CurrentRevision(ctx context.Context) (int64, error)
	// Compact discards the history at and below revision, so reads at those
	// revisions fail with ErrCompacted. Latest versions of live keys are
	// always kept. It fails with ErrCompacted if revision is already
	// compacted and ErrFutureRev if it is above the current revision, and
	// returns the current revision.
	Compact(ctx context.Context, revision int64) (int64, error)
	// DbSize returns the size of the backing storage in bytes.
	DbSize(ctx context.Context) (int64, error)
	// Close stops background work, closes all watches and releases the
	// store. Writes already acknowledged are durable.
	Close() error
}
