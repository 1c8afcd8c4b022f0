package oci

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// allowed reports whether the filter allows syscall name unconditionally.
func allowed(f *specs.LinuxSeccomp, name string) bool {
	for _, sc := range f.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 && slices.Contains(sc.Names, name) {
			return true
		}
	}
	return false
}

func TestSeccompInSpec(t *testing.T) {
	for _, typ := range []runtime.SeccompType{"", runtime.SeccompUnconfined} {
		in := baseInput()
		in.Security.Seccomp.Type = typ
		if s, err := buildSpec(in); err != nil || s.Linux.Seccomp != nil {
			t.Errorf("seccomp type %q: filter %v, %v; want none", typ, s.Linux.Seccomp, err)
		}
	}
	in := baseInput()
	in.Security.Seccomp.Type = runtime.SeccompRuntimeDefault
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	f := s.Linux.Seccomp
	if f == nil || f.DefaultAction != specs.ActErrno || !allowed(f, "read") || allowed(f, "unshare") || allowed(f, "mount") {
		t.Fatalf("RuntimeDefault filter: %+v", f)
	}
	// The default profile's capability-dependent rules follow the spec's set.
	in.Security.CapAdd = []string{"SYS_ADMIN"}
	if s, err = buildSpec(in); err != nil || !allowed(s.Linux.Seccomp, "unshare") || !allowed(s.Linux.Seccomp, "mount") {
		t.Errorf("RuntimeDefault with CAP_SYS_ADMIN does not allow unshare and mount: %v", err)
	}
	in.Security.Privileged = true
	if s, err = buildSpec(in); err != nil || s.Linux.Seccomp != nil {
		t.Errorf("a privileged container got a seccomp filter: %v", err)
	}
	in = baseInput()
	in.Security.Seccomp.Type = "strict"
	if _, err := buildSpec(in); !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("unknown seccomp type: %v, want ErrInvalid", err)
	}
}

func TestUnmaskedProcInSpec(t *testing.T) {
	in := baseInput()
	in.Security.UnmaskedProc = true
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("procMount Unmasked: masked %q, read-only %q; want none", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if m := mountAt(s, "/sys"); m == nil || !slices.Contains(m.Options, "ro") {
		t.Errorf("procMount Unmasked must not make /sys writable: %+v", m)
	}
}

func TestHandlerNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"runc": true, "crun": true, "kata-fc": true, "a": true, "gvisor2": true,
		"": false, "Runc": false, "-runc": false, "runc-": false, "run_c": false, "run.c": false,
		"0123456789abcdef0123456789abcdef": false, "0123456789abcdef0123456789abcdeg": true,
	} {
		if err := validHandlerName(name); (err == nil) != ok {
			t.Errorf("validHandlerName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	if a, b := wrapperPath("/s/bin", "/usr/bin/crun"), wrapperPath("/s/bin", "/opt/crun"); a == b {
		t.Errorf("two crun binaries share the create wrapper %s", a)
	}
}
