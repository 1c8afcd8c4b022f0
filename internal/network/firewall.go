package network

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// The plugins keep their firewall state in iptables' nat table (through the
// iptables command, so in nf_tables with iptables-nft):
//
//	bridge (ipMasq)  chain CNI-<hash(network, sandbox)> with an ACCEPT for the
//	                 pod range and a MASQUERADE for everything but multicast,
//	                 and a POSTROUTING rule -s POD-IP -j CNI-<hash>; all
//	                 commented `name: "NETWORK" id: "SANDBOX"`.
//	portmap          per sandbox with host ports: chain CNI-DN-<hash> with the
//	                 DNAT rules (commented `dnat name: "NETWORK" id: "SANDBOX"`)
//	                 and a jump to it from CNI-HOSTPORT-DNAT. Shared by every
//	                 CNI user of the machine and never removed by the plugin:
//	                 CNI-HOSTPORT-DNAT (jumped to from PREROUTING and OUTPUT
//	                 for local destinations), CNI-HOSTPORT-SETMARK and
//	                 CNI-HOSTPORT-MASQ (jumped to from POSTROUTING).
//
// CNI DEL removes the per-sandbox chains. sweepFirewall removes whatever of
// them a DEL could not: the bridge finds the pod's addresses for its
// masquerade rules only inside the pod's namespace, and portmap removes
// nothing when the cached port mappings are lost.

// sharedChains belong to every CNI user of the machine: a sweep of one
// network leaves them; sweepSharedChains removes them once nobody uses them.
var sharedChains = []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SNAT"}

// sweepScript returns the iptables-restore input that removes, from the nat
// table dumped by iptables-save in save, every rule commented with network
// (and sandbox id, unless empty), every rule jumping to a chain that holds or
// is the target of such a rule, and those chains. Empty when nothing matches.
func sweepScript(save []byte, network, id string) []byte {
	marker := `name: \"` + network + `\"`
	idMarker := `id: \"` + id + `\"`
	ours := func(line string) bool {
		return strings.Contains(line, marker) && (id == "" || strings.Contains(line, idMarker))
	}
	_, rules := parseNat(save)
	chains := map[string]bool{}
	found := false
	for _, r := range rules {
		if !ours(r.line) {
			continue
		}
		found = true
		for _, c := range []string{r.chain, r.target} {
			if strings.HasPrefix(c, "CNI-") && !slices.Contains(sharedChains, c) {
				chains[c] = true
			}
		}
	}
	if !found {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, r := range rules {
		if chains[r.chain] {
			continue // flushed below
		}
		if ours(r.line) || chains[r.target] {
			b.WriteString("-D " + strings.TrimPrefix(r.line, "-A ") + "\n")
		}
	}
	names := make([]string, 0, len(chains))
	for c := range chains {
		names = append(names, c)
	}
	slices.Sort(names)
	for _, c := range names {
		fmt.Fprintf(&b, "-F %s\n", c)
	}
	for _, c := range names {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// natRule is one "-A" line of an iptables-save dump.
type natRule struct{ chain, line, target string }

// parseNat returns the nat table's chains and rules from an iptables-save dump.
func parseNat(save []byte) (chains []string, rules []natRule) {
	inNat := false
	for line := range strings.Lines(string(save)) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "*"):
			inNat = line == "*nat"
		case !inNat:
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 {
				chains = append(chains, f[0])
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			r := natRule{chain: f[1], line: line}
			if i := slices.Index(f, "-j"); i >= 0 && i+1 < len(f) {
				r.target = f[i+1]
			}
			rules = append(rules, r)
		}
	}
	return chains, rules
}

var builtinNatChains = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// sharedSweepScript returns the iptables-restore input that removes portmap's
// shared chains and their jumps from the built-in chains, but only when no
// one uses them: CNI-HOSTPORT-DNAT is empty and no other chain jumps to
// them. Empty otherwise, or when they do not exist.
func sharedSweepScript(save []byte) []byte {
	chains, rules := parseNat(save)
	var present []string
	for _, c := range sharedChains {
		if slices.Contains(chains, c) {
			present = append(present, c)
		}
	}
	if len(present) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, r := range rules {
		if r.chain == "CNI-HOSTPORT-DNAT" {
			return nil // some CNI user's host ports
		}
		if !slices.Contains(sharedChains, r.target) || slices.Contains(sharedChains, r.chain) {
			continue
		}
		if !slices.Contains(builtinNatChains, r.chain) {
			return nil // a sandbox chain of some CNI user jumps to it
		}
		b.WriteString("-D " + strings.TrimPrefix(r.line, "-A ") + "\n")
	}
	for _, c := range present {
		fmt.Fprintf(&b, "-F %s\n", c)
	}
	for _, c := range present {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// sweepFirewall removes the plugins' leftover nat rules and chains of network
// (and sandbox id, unless empty). Without iptables there is nothing the
// plugins could have made.
func sweepFirewall(ctx context.Context, network, id string) error {
	return restoreNat(ctx, func(save []byte) []byte { return sweepScript(save, network, id) })
}

// sweepSharedChains removes portmap's shared chains when no one uses them.
func sweepSharedChains(ctx context.Context) error {
	return restoreNat(ctx, sharedSweepScript)
}

// restoreNat dumps the nat table and feeds script's answer to
// iptables-restore (nothing when it answers nil).
func restoreNat(ctx context.Context, script func(save []byte) []byte) error {
	if _, err := exec.LookPath("iptables-save"); err != nil {
		return nil
	}
	save, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
	if err != nil {
		return fmt.Errorf("iptables-save: %w", err)
	}
	in := script(save)
	if in == nil {
		return nil
	}
	cmd := exec.CommandContext(ctx, "iptables-restore", "--noflush", "-w", "10")
	cmd.Stdin = bytes.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
