package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/peapod-dev/peapod/internal/storage"
)

// Bucket names. The layout is:
//
//	meta: "rev" -> current revision, "compact" -> compact revision,
//	      "schema" -> layout version (all 8-byte big-endian)
//	log:  revision (8-byte big-endian) -> encoded record
//	keys: key -> revision of its latest version, for live keys only
//	hist: escaped key + terminator + revision -> empty, one entry per record
//	      still in the log, for reading keys at older revisions
//	ttl:  expiry (unix nanoseconds) + revision -> key, one entry per live
//	      version written with a lease
var (
	bucketMeta = []byte("meta")
	bucketLog  = []byte("log")
	bucketKeys = []byte("keys")
	bucketHist = []byte("hist")
	bucketTTL  = []byte("ttl")

	metaRev     = []byte("rev")
	metaCompact = []byte("compact")
	metaSchema  = []byte("schema")
)

const schemaVersion = 1

const (
	flagCreate byte = 1 << iota
	flagDelete
)

// errCorrupt is returned when a stored record cannot be decoded.
var errCorrupt = errors.New("bolt storage: corrupt record")

// record is one entry of the log: a create, update or delete of a key.
type record struct {
	key       string
	create    bool
	delete    bool
	createRev int64
	// prevRev is the revision of the version this record supersedes; 0 for
	// creations.
	prevRev int64
	lease   int64
	// expiresAt is the unix time in nanoseconds at which a leased version
	// expires; 0 without a lease.
	expiresAt int64
	// value is empty for deletions.
	value []byte
}

func (r *record) encode() []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(r.key)+len(r.value))
	var flags byte
	if r.create {
		flags |= flagCreate
	}
	if r.delete {
		flags |= flagDelete
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(r.createRev))
	b = binary.AppendUvarint(b, uint64(r.prevRev))
	b = binary.AppendVarint(b, r.lease)
	b = binary.AppendVarint(b, r.expiresAt)
	b = binary.AppendUvarint(b, uint64(len(r.key)))
	b = append(b, r.key...)
	return append(b, r.value...)
}

// decodeRecord decodes b, copying everything out of it (b may be memory
// owned by a bbolt transaction).
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < 1 {
		return r, errCorrupt
	}
	flags := b[0]
	r.create = flags&flagCreate != 0
	r.delete = flags&flagDelete != 0
	b = b[1:]
	var ok bool
	next := func(signed bool) int64 {
		if !ok {
			return 0
		}
		var v int64
		var n int
		if signed {
			v, n = binary.Varint(b)
		} else {
			var u uint64
			u, n = binary.Uvarint(b)
			v = int64(u)
		}
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	ok = true
	r.createRev = next(false)
	r.prevRev = next(false)
	r.lease = next(true)
	r.expiresAt = next(true)
	keyLen := next(false)
	if !ok || keyLen < 0 || keyLen > int64(len(b)) {
		return r, errCorrupt
	}
	r.key = string(b[:keyLen])
	if rest := b[keyLen:]; len(rest) > 0 {
		r.value = bytes.Clone(rest)
	}
	return r, nil
}

// kv returns the version the record wrote, as of revision rev.
func (r *record) kv(rev int64) *storage.KeyValue {
	return &storage.KeyValue{
		Key:            r.key,
		CreateRevision: r.createRev,
		ModRevision:    rev,
		Value:          r.value,
		Lease:          r.lease,
	}
}

func revKey(rev int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(rev))
}

func parseRev(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: revision of %d bytes", errCorrupt, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// escapeKey appends key to dst with every 0x00 byte written as 0x00 0xFF.
// Together with the 0x00 0x01 terminator that encodeKey adds this keeps the
// byte order of keys, and makes no encoded key a prefix of another, so an
// encoded key followed by a revision sorts by key and then by revision.
func escapeKey(dst []byte, key string) []byte {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c == 0 {
			dst = append(dst, 0, 0xFF)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// encodeKey returns the escaped and terminated form of key used in hist.
func encodeKey(key string) []byte {
	return append(escapeKey(make([]byte, 0, len(key)+2+8), key), 0, 1)
}

// afterKey returns a hist key that sorts after every entry of key and
// before every entry of keys sorting after key.
func afterKey(key string) []byte {
	return append(escapeKey(make([]byte, 0, len(key)+2), key), 0, 2)
}

func histKey(key string, rev int64) []byte {
	return binary.BigEndian.AppendUint64(encodeKey(key), uint64(rev))
}

// splitHistKey splits a hist key into its encoded key and revision.
func splitHistKey(k []byte) ([]byte, int64, error) {
	if len(k) < 10 {
		return nil, 0, fmt.Errorf("%w: hist key of %d bytes", errCorrupt, len(k))
	}
	rev, err := parseRev(k[len(k)-8:])
	return k[:len(k)-8], rev, err
}

func ttlKey(expiresAt, rev int64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(expiresAt))
	return binary.BigEndian.AppendUint64(b, uint64(rev))
}

// keyFits reports whether key fits in every bucket it is stored in.
func keyFits(key string) bool {
	n := len(key) + strings.Count(key, "\x00") + 2 + 8
	return n <= bbolt.MaxKeySize
}
