package busybox

import (
	"strings"
	"testing"
)

func TestRelTarget(t *testing.T) {
	for _, tc := range [][3]string{
		{"bin", "bin/busybox", "busybox"},
		{"sbin", "bin/busybox", "../bin/busybox"},
		{"usr/bin", "bin/busybox", "../../bin/busybox"},
		{".", "bin/busybox", "bin/busybox"},
	} {
		if got := relTarget(tc[0], tc[1]); got != tc[2] {
			t.Errorf("relTarget(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestRefusesDynamicBinary(t *testing.T) {
	// /bin/ls is dynamically linked on Debian: it would not run in the image.
	if _, err := Image("/bin/ls"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("Image(/bin/ls) = %v, want a dynamically-linked error", err)
	}
	if _, err := Image("/nonexistent/busybox"); err == nil || !strings.Contains(err.Error(), "busybox-static") {
		t.Fatalf("Image of a missing binary = %v", err)
	}
}
