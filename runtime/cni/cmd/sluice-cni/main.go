// sluice-cni: a chained CNI plugin that captures a pod's TCP traffic into the Sluice node proxy.
// On ADD it asks the proxy to install in-pod redirection (nftables in the pod's netns, to the
// proxy's listeners there); DEL removes it, CHECK verifies it. prevResult passes through.

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
)

const about = "sluice-cni: sends pod traffic through the Sluice node proxy (docs/capture.md)"

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus, GC: cmdGC},
		version.PluginSupports("0.4.0", "1.0.0", "1.1.0"), about)
}

// pod is what every command derives from its arguments, or the reason the pod is left alone.
type pod struct {
	conf  *PluginConf
	req   PodRequest
	leave string
}

func load(args *skel.CmdArgs, needPrev bool) (*pod, error) {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return nil, err
	}
	k8s, err := parseArgs(args.Args)
	if err != nil {
		return nil, err
	}
	if needPrev && conf.PrevResult == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "sluice-cni: no prevResult; sluice-cni is a chained plugin and must come after the primary plugin (bridge, calico, cilium...) in the conflist", "")
	}
	p := &pod{conf: conf, req: PodRequest{
		ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns,
		Namespace: string(k8s.K8S_POD_NAMESPACE), Name: string(k8s.K8S_POD_NAME),
	}}
	if p.leave = conf.optedOut(k8s); p.leave != "" {
		return p, nil
	}
	if args.Netns == "" {
		p.leave = "no network namespace (a host-network pod)"
	} else if host, err := isHostNetns(args.Netns); err == nil && host {
		p.leave = "the network namespace is the node's own (a host-network pod)"
	}
	return p, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	p, err := load(args, true)
	if err != nil {
		return err
	}
	if p.leave == "" {
		if p.req.IPs, p.req.Gateways, err = podAddresses(p.conf.PrevResult); err != nil {
			return err
		}
		ex := p.conf.exclusions()
		p.req.Exclude = &ex
		if err := newClient(p.conf).call("/v1/pods/add", p.req); err != nil {
			if !p.conf.FailOpen {
				return addError(p, err)
			}
			// failOpen: the operator chose availability over capture; the pod runs uncaptured.
			warn("capture of %s failed, pod starts uncaptured (failOpen): %v", p.describe(), err)
		}
	}
	return types.PrintResult(p.conf.PrevResult, p.conf.CNIVersion)
}

func addError(p *pod, err error) error {
	if errors.Is(err, errUnreachable) {
		return types.NewError(ErrTryAgainLater, fmt.Sprintf("sluice-cni: cannot capture pod %s: the Sluice node proxy is not running on this node (%v); the pod is not started uncaptured. Check the sluice DaemonSet pod on this node, or set failOpen in the plugin config to start pods uncaptured when the proxy is down", p.describe(), err), "")
	}
	var pe *proxyError
	if errors.As(err, &pe) {
		return types.NewError(ErrProxyRefused, fmt.Sprintf("sluice-cni: the node proxy could not capture pod %s: %s", p.describe(), pe.Message), pe.Code)
	}
	return err
}

func cmdDel(args *skel.CmdArgs) error {
	p, err := load(args, false)
	if err != nil {
		return err
	}
	if p.leave != "" && !strings.Contains(p.leave, "host-network") {
		// An opted-out pod may have been captured before its annotation changed: remove anyway.
		p.leave = ""
	}
	if p.leave != "" {
		return nil
	}
	err = newClient(p.conf).call("/v1/pods/del", p.req)
	if err == nil {
		return nil
	}
	// DEL must succeed when state is gone: with the proxy away, remove the rules ourselves if the
	// netns still exists (the proxy's listeners in it died with the proxy).
	if errors.Is(err, errUnreachable) {
		return removeRules(args.Netns)
	}
	var pe *proxyError
	if errors.As(err, &pe) {
		return types.NewError(ErrProxyRefused, fmt.Sprintf("sluice-cni: the node proxy could not release pod %s: %s", p.describe(), pe.Message), pe.Code)
	}
	return err
}

func cmdCheck(args *skel.CmdArgs) error {
	p, err := load(args, true)
	if err != nil || p.leave != "" {
		return err
	}
	ips, gateways, err := podAddresses(p.conf.PrevResult)
	if err != nil {
		return err
	}
	p.req.IPs, p.req.Gateways = ips, gateways
	ex := p.conf.exclusions()
	p.req.Exclude = &ex
	err = newClient(p.conf).call("/v1/pods/check", p.req)
	var pe *proxyError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errUnreachable):
		if p.conf.FailOpen {
			// failOpen: pods may run uncaptured while the proxy is away, so this is not an error.
			return nil
		}
		return types.NewError(ErrTryAgainLater, fmt.Sprintf("sluice-cni: cannot check pod %s: %v; check the sluice DaemonSet pod on this node", p.describe(), err), "")
	case errors.As(err, &pe) && pe.Code == "SLUICE_ERR_CAPTURE_RULES_MISMATCH":
		return types.NewError(ErrRulesTampered, fmt.Sprintf("sluice-cni: the capture rules of pod %s are not as installed: %s. Something else changed the pod's nftables; recreate the pod to reinstall them", p.describe(), pe.Message), pe.Code)
	case errors.As(err, &pe):
		return types.NewError(ErrProxyRefused, fmt.Sprintf("sluice-cni: the node proxy could not check pod %s: %s", p.describe(), pe.Message), pe.Code)
	}
	return err
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if conf.FailOpen {
		return nil
	}
	if err := newClient(conf).call("/v1/ready", struct{}{}); err != nil {
		return types.NewError(ErrNotAvailable, fmt.Sprintf("sluice-cni: the Sluice node proxy is not ready (%v); new pods cannot be captured. Check the sluice DaemonSet pod on this node", err), "")
	}
	return nil
}

// cmdGC: the runtime lists the attachments that still exist; the proxy releases the others.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	valid := []map[string]string{}
	for _, a := range conf.ValidAttachments {
		valid = append(valid, map[string]string{"containerId": a.ContainerID, "ifName": a.IfName})
	}
	err = newClient(conf).call("/v1/pods/gc", map[string]any{"valid": valid})
	if err != nil && !errors.Is(err, errUnreachable) {
		return types.NewError(ErrProxyRefused, fmt.Sprintf("sluice-cni: the node proxy failed to collect stale pods: %v", err), "")
	}
	return nil
}

func (p *pod) describe() string {
	if p.req.Namespace != "" {
		return fmt.Sprintf("%s/%s (container %s)", p.req.Namespace, p.req.Name, p.req.ContainerID)
	}
	return "container " + p.req.ContainerID
}

// isHostNetns: is path the network namespace this plugin runs in (the node's)?
func isHostNetns(path string) (bool, error) {
	a, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	b, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// removeRules deletes the capture tables (ip, ip6) inside the pod's netns; a gone netns or table is success.
func removeRules(netnsPath string) error {
	if netnsPath == "" {
		return nil
	}
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		// "add then delete" succeeds whether or not the table exists.
		cmd := exec.Command(nftPath(), "-f", "-")
		cmd.Stdin = strings.NewReader("add table ip sluice\ndelete table ip sluice\nadd table ip6 sluice\ndelete table ip6 sluice\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	var notFound ns.NSPathNotExistErr
	if err == nil || errors.As(err, &notFound) {
		return nil
	}
	if _, statErr := os.Stat(netnsPath); os.IsNotExist(statErr) {
		return nil
	}
	return types.NewError(ErrNetnsUnreadable, fmt.Sprintf("sluice-cni: the node proxy is down and removing the capture rules from %s failed: %v", netnsPath, err), "")
}

// nftPath: the nftables CLI at its usual places first, then on PATH.
func nftPath() string {
	for _, p := range []string{"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "nft"
}

func warn(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sluice-cni: "+format+"\n", args...)
}
