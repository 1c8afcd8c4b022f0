package server

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	ok := DefaultOptions()
	ok.DisableAgent = true
	for _, tc := range []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"defaults with --disable-agent", func(*Options) {}, ""},
		{"etcd endpoint reserved", func(o *Options) { o.DatastoreEndpoint = "etcd://127.0.0.1:2379" }, "etcd backend is not available"},
		{"other endpoint", func(o *Options) { o.DatastoreEndpoint = "mysql://x" }, "unsupported"},
		{"bad port", func(o *Options) { o.HTTPSPort = 70000 }, "--https-listen-port"},
		{"bad bind", func(o *Options) { o.BindAddress = "localhost" }, "--bind-address"},
		{"bad cluster cidr", func(o *Options) { o.ClusterCIDR = "10.42.0.0" }, "--cluster-cidr"},
		{"bad service cidr", func(o *Options) { o.ServiceCIDR = "nope" }, "--service-cidr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			err := o.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestClientHost(t *testing.T) {
	for bind, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "127.0.0.1", "127.0.0.1": "127.0.0.1", "192.0.2.1": "192.0.2.1"} {
		if got := clientHost(bind); got != want {
			t.Errorf("clientHost(%q) = %q, want %q", bind, got, want)
		}
	}
}
