// Package bolt implements storage.Backend in a single bbolt file.
//
// The store is log-structured like kine: every write appends a record to a
// log keyed by revision, and indexes point at the log (see record.go for the
// bucket layout). All writes go through one writer goroutine that drains
// every queued request into a single read-write transaction (group commit),
// fsyncs it, and only then acknowledges the requests and hands the changes
// to watchers. Reads use read transactions. History older than a retention
// window is compacted in the background in small transactions, and keys
// written with a lease are deleted when their TTL passes.
//
// Everything a write changes, including the revision counters, is updated
// in the same bbolt transaction, so the file is consistent after a crash
// without any repair step.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/peapod-dev/peapod/internal/storage"
)

// Options configures a Store. Zero values select the defaults.
type Options struct {
	// Retain is how many recent revisions background compaction keeps.
	// Default 1000.
	Retain int64
	// CompactInterval is how often background compaction runs. Default 1m;
	// negative disables background compaction.
	CompactInterval time.Duration
	// CompactBatch is the most revisions compacted in one transaction.
	// Default 500.
	CompactBatch int64
	// MaxBatch is the most write requests applied in one transaction.
	// Default 1000.
	MaxBatch int
	// MaxBatchBytes stops adding requests to a transaction once their
	// values add up to this many bytes. Default 16 MiB.
	MaxBatchBytes int
	// WatchBuffer is how many batches of events a watcher may lag behind the
	// writers before it is closed with storage.ErrWatchTooSlow. Default 1024.
	WatchBuffer int
	// LockTimeout is how long Open waits for another process holding the
	// file to release it. Default 10s.
	LockTimeout time.Duration
	// InitialMmapSize is passed to bbolt. Default 64 MiB.
	InitialMmapSize int
}

func (o Options) withDefaults() Options {
	if o.Retain <= 0 {
		o.Retain = 1000
	}
	if o.CompactInterval == 0 {
		o.CompactInterval = time.Minute
	}
	if o.CompactBatch <= 0 {
		o.CompactBatch = 500
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 16 << 20
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = 1024
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 10 * time.Second
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = 64 << 20
	}
	return o
}

// Store is a storage.Backend kept in one bbolt file.
type Store struct {
	db   *bbolt.DB
	log  *slog.Logger
	opts Options

	// rev and compactRev mirror the committed meta values.
	rev        atomic.Int64
	compactRev atomic.Int64

	closeMu sync.RWMutex // guards closed and sending on queue
	closed  bool
	queue   chan *writeOp

	// ctx is cancelled, and done closed, when Close starts.
	ctx    context.Context
	cancel context.CancelFunc
	done   <-chan struct{}

	writerDone chan struct{}
	bg         sync.WaitGroup // compactor, TTL loop and watch pumps
	compactMu  sync.Mutex     // one compaction at a time
	ttlWake    chan struct{}

	bcast *broadcaster
}

var _ storage.Backend = (*Store)(nil)

// Open opens (creating if needed) the store in the bbolt file at path and
// starts its background work. A nil logger discards logs.
func Open(path string, logger *slog.Logger, opts Options) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts = opts.withDefaults()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         opts.LockTimeout,
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: opts.InitialMmapSize,
	})
	if err != nil {
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	var rev, compact int64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketLog, bucketKeys, bucketHist, bucketTTL} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaSchema); v == nil {
			if err := meta.Put(metaSchema, revKey(schemaVersion)); err != nil {
				return err
			}
		} else if got, err := parseRev(v); err != nil || got != schemaVersion {
			return fmt.Errorf("unsupported schema version %x", v)
		}
		var err error
		if rev, compact, err = readMeta(tx); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open bolt store %s: %w", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		db:         db,
		log:        logger,
		opts:       opts,
		queue:      make(chan *writeOp, 2*opts.MaxBatch),
		ctx:        ctx,
		cancel:     cancel,
		done:       ctx.Done(),
		writerDone: make(chan struct{}),
		ttlWake:    make(chan struct{}, 1),
		bcast:      newBroadcaster(rev),
	}
	s.rev.Store(rev)
	s.compactRev.Store(compact)
	logger.Info("opened bolt store", "path", path, "revision", rev, "compactRevision", compact)

	go s.writer()
	s.bg.Add(1)
	go s.ttlLoop()
	if opts.CompactInterval > 0 {
		s.bg.Add(1)
		go s.compactLoop()
	}
	return s, nil
}

// readMeta returns the current and compact revisions stored in tx.
func readMeta(tx *bbolt.Tx) (rev, compact int64, err error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(metaRev); v != nil {
		if rev, err = parseRev(v); err != nil {
			return 0, 0, err
		}
	}
	if v := meta.Get(metaCompact); v != nil {
		if compact, err = parseRev(v); err != nil {
			return 0, 0, err
		}
	}
	return rev, compact, nil
}

// Close stops background work, lets queued writes finish, ends all watches
// and closes the file.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	close(s.queue)
	s.closeMu.Unlock()

	<-s.writerDone
	s.bcast.close()
	s.bg.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close bolt store: %w", err)
	}
	return nil
}

// view runs fn in a read transaction, reporting storage.ErrClosed once the
// store is closed.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return err
}

// CurrentRevision returns the revision of the latest committed write whose
// events have been handed to watchers. A read may briefly observe a newer
// revision while its commit is being published.
func (s *Store) CurrentRevision(context.Context) (int64, error) {
	return s.rev.Load(), nil
}

// DbSize returns the size of the bbolt file in bytes.
func (s *Store) DbSize(context.Context) (int64, error) {
	var size int64
	err := s.view(func(tx *bbolt.Tx) error {
		size = tx.Size()
		return nil
	})
	return size, err
}
