// Package listcache owns the API server's cache of encoded list items: the
// protobuf or JSON encoding of each object a LIST answered with, kept so
// that the next LIST can copy the bytes instead of converting every object
// to its API version and marshalling it again.
//
// Upstream's LIST handler gets internal objects from the watch cache, converts
// the whole list to the requested version and marshals it. For 10,000 pods
// that is about 75 ms of CPU and 25 MB of garbage per request, and the
// garbage collection it triggers costs as much again (docs/BENCHMARKS.md).
// Cache wraps the API group's NegotiatedSerializer: everything upstream does
// before encoding (authorization, resourceVersion semantics, selectors,
// paging, the watch cache) is untouched, and for the list types it was given
// the protobuf and JSON encoders write the same bytes upstream's would, each
// item taken from the cache when the object has not changed since it was
// last encoded. YAML, pretty-printed JSON, Tables and single objects are
// encoded by upstream's encoders as before.
//
// An item is identified by its namespace, name, UID and resourceVersion: the
// resourceVersion changes with every write, so an object whose entry matches
// all four encodes to the entry's bytes. Entries that no LIST used for the
// idle period are dropped by Run, and the cache never holds more than its
// byte budget (items beyond it are encoded but not kept).
package listcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// protobufEncoder is the Identifier of apimachinery's protobuf serializer.
const protobufEncoder runtime.Identifier = "protobuf"

// jsonEncoder is the Identifier of apimachinery's compact JSON serializer
// (not YAML, not pretty), which writes with encoding/json's Encoder.
var jsonEncoder = jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, nil, nil, jsonserializer.SerializerOptions{}).Identifier()

// protobufPrefix starts every object the Kubernetes protobuf serializer
// writes; a runtime.Unknown envelope follows.
var protobufPrefix = []byte{0x6b, 0x38, 0x73, 0x00}

// Field numbers of the protobuf messages the encoder rewrites. Every list
// type of the Kubernetes API has ListMeta as field 1 and Items as field 2.
const (
	unknownRawField = 2
	listItemsField  = 2
)

// Config is what a Cache is built from.
type Config struct {
	// Convertor converts the internal objects the registry returns to the
	// version the client asked for (the API group's scheme).
	Convertor runtime.ObjectConvertor
	// Lists are the internal list types whose LISTs are served from the
	// cache, for example &core.PodList{}.
	Lists []runtime.Object
	// Clock drives the eviction of entries no LIST used for Idle.
	Clock clock.WithTicker
	// Idle is how long an entry is kept without a LIST using it.
	Idle time.Duration
	// MaxBytes bounds the encoded bytes the cache holds.
	MaxBytes int
}

// Cache is the cache of encoded list items, shared by the encoders it makes.
type Cache struct {
	cfg   Config
	lists map[reflect.Type]bool

	mu    sync.Mutex
	items map[key]*entry
	bytes int
}

// key identifies an object of one list type in one encoding.
type key struct {
	list      reflect.Type
	encoding  runtime.Identifier
	namespace string
	name      string
}

type entry struct {
	uid  types.UID
	rv   string
	data []byte
	used time.Time
}

// New returns an empty cache for cfg.Lists.
func New(cfg Config) (*Cache, error) {
	if cfg.Convertor == nil || cfg.Clock == nil || cfg.Idle <= 0 || cfg.MaxBytes <= 0 {
		return nil, errors.New("listcache: Convertor, Clock, Idle and MaxBytes are required")
	}
	c := &Cache{cfg: cfg, lists: map[reflect.Type]bool{}, items: map[key]*entry{}}
	for _, l := range cfg.Lists {
		if !meta.IsListType(l) {
			return nil, fmt.Errorf("listcache: %T is not a list type", l)
		}
		c.lists[reflect.TypeOf(l)] = true
	}
	return c, nil
}

// Run drops entries no LIST used for the idle period, until ctx ends.
func (c *Cache) Run(ctx context.Context) {
	t := c.cfg.Clock.NewTicker(c.cfg.Idle / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.evict(c.cfg.Clock.Now().Add(-c.cfg.Idle))
		}
	}
}

// evict drops the entries last used before cutoff.
func (c *Cache) evict(cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.items {
		if e.used.Before(cutoff) {
			delete(c.items, k)
			c.bytes -= len(e.data)
		}
	}
}

// Len reports how many entries the cache holds and their encoded bytes.
func (c *Cache) Len() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items), c.bytes
}

// NegotiatedSerializer wraps an API group's serializer so that its protobuf
// encoders serve the cache's list types from the cache. Decoding and every
// other encoding are inner's.
func (c *Cache) NegotiatedSerializer(inner runtime.NegotiatedSerializer) runtime.NegotiatedSerializer {
	return negotiated{NegotiatedSerializer: inner, cache: c}
}

type negotiated struct {
	runtime.NegotiatedSerializer
	cache *Cache
}

func (n negotiated) EncoderForVersion(serializer runtime.Encoder, gv runtime.GroupVersioner) runtime.Encoder {
	enc := n.NegotiatedSerializer.EncoderForVersion(serializer, gv)
	var f format
	switch serializer.Identifier() {
	case protobufEncoder:
		f = protobufFormat{}
	case jsonEncoder:
		f = jsonFormat{}
	default:
		return enc
	}
	return &encoder{inner: enc, gv: gv, cache: n.cache, format: f}
}

// format is how one encoding nests items in a list.
type format interface {
	// splice returns the list encoded by upstream as head (the list
	// without items) with items added, in alloc's memory.
	splice(head []byte, items [][]byte, alloc runtime.MemoryAllocator) ([]byte, error)
	// item encodes one versioned object as a list item.
	item(obj runtime.Object) ([]byte, error)
}

// encoder is an encoder for one version that splices cached items into the
// lists it encodes. Identifier is inner's: the bytes are the same.
type encoder struct {
	inner  runtime.Encoder
	gv     runtime.GroupVersioner
	cache  *Cache
	format format
}

func (e *encoder) Identifier() runtime.Identifier { return e.inner.Identifier() }

func (e *encoder) Encode(obj runtime.Object, w io.Writer) error {
	return e.EncodeWithAllocator(obj, w, &runtime.SimpleAllocator{})
}

func (e *encoder) EncodeWithAllocator(obj runtime.Object, w io.Writer, alloc runtime.MemoryAllocator) error {
	t := reflect.TypeOf(obj)
	if !e.cache.lists[t] || meta.LenList(obj) == 0 {
		if ea, ok := e.inner.(runtime.EncoderWithAllocator); ok {
			return ea.EncodeWithAllocator(obj, w, alloc)
		}
		return e.inner.Encode(obj, w)
	}
	return e.encodeList(t, obj, w, alloc)
}

// encodeList writes list as upstream's encoder would: the envelope and list
// metadata from inner (the list without its items), then each item's
// encoding.
func (e *encoder) encodeList(t reflect.Type, list runtime.Object, w io.Writer, alloc runtime.MemoryAllocator) error {
	head, err := e.emptyList(t, list)
	if err != nil {
		return err
	}
	items, err := e.items(t, list)
	if err != nil {
		return err
	}
	out, err := e.format.splice(head, items, alloc)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// protobufFormat nests items as the repeated field 2 of the list message,
// inside the runtime.Unknown envelope's raw field.
type protobufFormat struct{}

func (protobufFormat) splice(head []byte, items [][]byte, alloc runtime.MemoryAllocator) ([]byte, error) {
	before, raw, after, err := splitEnvelope(head)
	if err != nil {
		return nil, err
	}
	size := len(raw)
	for _, d := range items {
		size += protowire.SizeTag(listItemsField) + protowire.SizeBytes(len(d))
	}
	total := len(before) + protowire.SizeTag(unknownRawField) + protowire.SizeBytes(size) + len(after)
	buf := alloc.Allocate(uint64(total))[:0]
	buf = append(buf, before...)
	buf = protowire.AppendTag(buf, unknownRawField, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(size))
	buf = append(buf, raw...)
	for _, d := range items {
		buf = protowire.AppendTag(buf, listItemsField, protowire.BytesType)
		buf = protowire.AppendBytes(buf, d)
	}
	return append(buf, after...), nil
}

// marshaler is what the versioned API types implement (gogo protobuf).
type marshaler interface {
	Marshal() ([]byte, error)
}

func (protobufFormat) item(obj runtime.Object) ([]byte, error) {
	m, ok := obj.(marshaler)
	if !ok {
		return nil, fmt.Errorf("listcache: %T has no protobuf encoding", obj)
	}
	return m.Marshal()
}

// jsonFormat nests items in the "items" array, the list type's last field:
// encoding/json writes a list without items as {...,"items":[]} and a
// newline.
type jsonFormat struct{}

var jsonNoItems = []byte(`"items":[]}` + "\n")

func (jsonFormat) splice(head []byte, items [][]byte, alloc runtime.MemoryAllocator) ([]byte, error) {
	if !bytes.HasSuffix(head, jsonNoItems) {
		return nil, errors.New("listcache: the encoded list does not end with its items")
	}
	open := head[:len(head)-len(jsonNoItems)+len(`"items":[`)]
	closing := head[len(open):]
	total := len(open) + len(closing) + max(len(items)-1, 0)
	for _, d := range items {
		total += len(d)
	}
	buf := alloc.Allocate(uint64(total))[:0]
	buf = append(buf, open...)
	for i, d := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, d...)
	}
	return append(buf, closing...), nil
}

// item is encoding/json's encoding of obj as an element of the list's
// items: without apiVersion and kind, which list items leave empty.
func (jsonFormat) item(obj runtime.Object) ([]byte, error) {
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	return json.Marshal(obj)
}

// emptyList encodes a shallow copy of list without its items through inner:
// the envelope, the list's kind and version, and its ListMeta.
func (e *encoder) emptyList(t reflect.Type, list runtime.Object) ([]byte, error) {
	cp := reflect.New(t.Elem())
	cp.Elem().Set(reflect.ValueOf(list).Elem())
	empty := cp.Interface().(runtime.Object)
	if err := meta.SetList(empty, nil); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := e.inner.Encode(empty, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// splitEnvelope splits an encoded runtime.Unknown around its Raw field:
// before holds the prefix and the fields ahead of Raw, after the rest.
func splitEnvelope(b []byte) (before, raw, after []byte, err error) {
	if !bytes.HasPrefix(b, protobufPrefix) {
		return nil, nil, nil, errors.New("listcache: the encoder did not write a protobuf object")
	}
	for off := len(protobufPrefix); off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return nil, nil, nil, protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
		if m < 0 {
			return nil, nil, nil, protowire.ParseError(m)
		}
		if num == unknownRawField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[off+n:])
			return b[:off], v, b[off+n+m:], nil
		}
		off += n + m
	}
	return nil, nil, nil, errors.New("listcache: the encoded list has no raw field")
}

// items returns each item's encoding, from the cache where the object is
// unchanged, encoding (and caching) the rest.
func (e *encoder) items(t reflect.Type, list runtime.Object) ([][]byte, error) {
	type item struct {
		obj runtime.Object
		k   key
		uid types.UID
		rv  string
	}
	// An object without a UID or resourceVersion (never one from storage)
	// cannot be told from another version of itself: it is encoded, not kept.
	cacheable := func(it item) bool { return it.uid != "" && it.rv != "" }
	encoding := e.inner.Identifier()
	all := make([]item, 0, meta.LenList(list))
	err := meta.EachListItem(list, func(obj runtime.Object) error {
		it := item{obj: obj}
		if a, err := meta.Accessor(obj); err == nil {
			it.k = key{list: t, encoding: encoding, namespace: a.GetNamespace(), name: a.GetName()}
			it.uid, it.rv = a.GetUID(), a.GetResourceVersion()
		}
		all = append(all, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(all))
	now := e.cache.cfg.Clock.Now()
	var missing []int
	e.cache.mu.Lock()
	for i, it := range all {
		if en, ok := e.cache.items[it.k]; ok && cacheable(it) && en.uid == it.uid && en.rv == it.rv {
			en.used = now
			out[i] = en.data
			continue
		}
		missing = append(missing, i)
	}
	e.cache.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	for _, i := range missing {
		d, err := e.encodeItem(all[i].obj)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	e.cache.mu.Lock()
	defer e.cache.mu.Unlock()
	for _, i := range missing {
		it := all[i]
		if !cacheable(it) {
			continue
		}
		// The object's older version, if cached, is stale either way.
		if old, ok := e.cache.items[it.k]; ok {
			delete(e.cache.items, it.k)
			e.cache.bytes -= len(old.data)
		}
		if e.cache.bytes+len(out[i]) > e.cache.cfg.MaxBytes {
			continue
		}
		e.cache.items[it.k] = &entry{uid: it.uid, rv: it.rv, data: out[i], used: now}
		e.cache.bytes += len(out[i])
	}
	return out, nil
}

// encodeItem converts one internal item to the encoder's version and
// encodes it, as the list's conversion and encoding do for each item.
func (e *encoder) encodeItem(obj runtime.Object) ([]byte, error) {
	out, err := e.cache.cfg.Convertor.ConvertToVersion(obj, e.gv)
	if err != nil {
		return nil, err
	}
	return e.format.item(out)
}
