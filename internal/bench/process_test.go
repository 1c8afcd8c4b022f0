package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
)

func TestParseProcStatus(t *testing.T) {
	status := []byte(`Name:	kube-apiserver
Umask:	0022
State:	S (sleeping)
VmPeak:	 2063836 kB
VmSize:	 2063836 kB
VmHWM:	  881352 kB
VmRSS:	  527048 kB
RssAnon:	  480000 kB
Threads:	14
`)
	m, err := parseProcStatus(status)
	if err != nil {
		t.Fatal(err)
	}
	if m != (ProcMemory{RSSKiB: 527048, HWMKiB: 881352, AnonKiB: 480000}) {
		t.Errorf("parseProcStatus = %+v", m)
	}
	if _, err := parseProcStatus([]byte("Name:\tkthreadd\nState:\tS\n")); err == nil {
		t.Error("no VmRSS: no error")
	}
	if _, err := parseProcStatus([]byte("VmRSS:\tlots\n")); err == nil {
		t.Error("garbled VmRSS: no error")
	}
}

func TestReadProcMemorySelf(t *testing.T) {
	m, err := ReadProcMemory(os.Getpid())
	if err != nil {
		t.Fatalf("read /proc/self: %v", err)
	}
	if m.RSSKiB <= 0 || m.HWMKiB < m.RSSKiB {
		t.Errorf("ReadProcMemory(self) = %+v", m)
	}
}

func TestBenchPod(t *testing.T) {
	p := benchPod(podName("pod", 1234), 1234)
	if p.Name != "pod-001234" {
		t.Errorf("name %q", p.Name)
	}
	if p.Labels[labelApp] != appName || p.Labels[labelBatch] != "2" {
		t.Errorf("labels %v", p.Labels)
	}
	if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Image == "" || p.Spec.NodeName != "" {
		t.Errorf("spec %+v", p.Spec)
	}
	if i, ok := watchPodIndex(p.Name, 2000); !ok || i != 1234 {
		t.Errorf("watchPodIndex(%q) = %d, %v", p.Name, i, ok)
	}
	for _, name := range []string{"probe", "pod-x", "pod-002000", "pod--1", "other-000001"} {
		if _, ok := watchPodIndex(name, 2000); ok {
			t.Errorf("watchPodIndex(%q) accepted it", name)
		}
	}
}

// watchFrame encodes a watch event the way kube-apiserver does on a protobuf
// watch stream: the object with the protobuf serializer, the event with the
// raw one, each event behind a 4-byte big-endian length.
func watchFrame(t *testing.T, typ watch.EventType, obj runtime.Object) []byte {
	t.Helper()
	codec := scheme.Codecs.EncoderForVersion(protobuf.NewSerializer(scheme.Scheme, scheme.Scheme), corev1.SchemeGroupVersion)
	var objBuf bytes.Buffer
	if err := codec.Encode(obj, &objBuf); err != nil {
		t.Fatal(err)
	}
	ev := metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: objBuf.Bytes()}}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func TestWatchStream(t *testing.T) {
	var stream []byte
	stream = append(stream, watchFrame(t, watch.Added, benchPod("pod-000007", 7))...)
	stream = append(stream, watchFrame(t, watch.Modified, benchPod("pod-000008", 8))...)
	stream = append(stream, watchFrame(t, watch.Error, &metav1.Status{Status: metav1.StatusFailure, Message: "too old resource version", Code: 410})...)

	w := &watchStream{body: io.NopCloser(bytes.NewReader(stream))}
	w.r = bufioReader(w.body)
	typ, name, err := w.next()
	if err != nil || typ != watch.Added || name != "pod-000007" {
		t.Fatalf("first event: %s %q %v", typ, name, err)
	}
	typ, name, err = w.next()
	if err != nil || typ != watch.Modified || name != "pod-000008" {
		t.Fatalf("second event: %s %q %v", typ, name, err)
	}
	if typ, _, err = w.next(); typ != watch.Error || err == nil {
		t.Fatalf("error event: %s %v", typ, err)
	}
	if _, _, err = w.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v, want EOF", err)
	}

	// A JSON stream is refused, not misread.
	w = &watchStream{body: io.NopCloser(bytes.NewReader([]byte(`{"type":"ADDED","object":{}}`)))}
	w.r = bufioReader(w.body)
	if _, _, err := w.next(); err == nil {
		t.Fatal("JSON stream decoded without error")
	}
}

func TestTail(t *testing.T) {
	noisy := "time=1 level=INFO msg=a\ntime=2 level=ERROR msg=b\ntime=3 level=INFO msg=c\nError: boom\n"
	if got, want := tail(noisy, 5), "time=2 level=ERROR msg=b\nError: boom"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
	if got, want := tail(noisy, 1), "Error: boom"; got != want {
		t.Errorf("tail(1) = %q, want %q", got, want)
	}
	quiet := "level=INFO msg=a\nlevel=INFO msg=b\nlevel=INFO msg=c\n"
	if got, want := tail(quiet, 2), "level=INFO msg=b\nlevel=INFO msg=c"; got != want {
		t.Errorf("tail of INFO only = %q, want %q", got, want)
	}
}

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 250 + stime 50 ticks.
	line := "4242 (peapod (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 1000 10\n"
	got, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Fatalf("cpu = %v, want 3s", got)
	}
	if _, err := parseProcStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Fatal("short line accepted")
	}
	self, err := ReadProcCPU(os.Getpid())
	if err != nil || self < 0 {
		t.Fatalf("own CPU time: %v, %v", self, err)
	}
}
