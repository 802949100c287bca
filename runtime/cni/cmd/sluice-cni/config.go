// The plugin's configuration: parsed and validated once per invocation, before any command
// runs, into a typed value the commands only read.

package main

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

const (
	defaultProxySocket = "/var/run/sluice/cni.sock"
	defaultTimeoutMs   = 5000
	// The pod annotation that opts a pod out, delivered by containerd and CRI-O as the
	// runtimeConfig capability "io.kubernetes.cri.pod-annotations".
	optOutAnnotation = "sluice.dev/capture"
	annotationsKey   = "io.kubernetes.cri.pod-annotations"
)

// Exclusions are sent to the node proxy, which renders them into the pod's nftables rules.
type Exclusions struct {
	OutboundPorts  []int    `json:"outboundPorts"`
	InboundPorts   []int    `json:"inboundPorts"`
	OutboundCIDRs  []string `json:"outboundCidrs"`
	InboundSources []string `json:"inboundSources"`
}

// PluginConf is the plugin's entry in the conflist.
type PluginConf struct {
	types.NetConf
	ProxySocket           string   `json:"proxySocket"`
	FailOpen              bool     `json:"failOpen"`
	TimeoutMs             int      `json:"timeoutMs"`
	ExcludeNamespaces     []string `json:"excludeNamespaces"`
	ExcludeOutboundPorts  []int    `json:"excludeOutboundPorts"`
	ExcludeInboundPorts   []int    `json:"excludeInboundPorts"`
	ExcludeOutboundCIDRs  []string `json:"excludeOutboundCIDRs"`
	ExcludeInboundSources []string `json:"excludeInboundSources"`
	RuntimeConfig         struct {
		PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations"`
	} `json:"runtimeConfig"`
}

// K8sArgs are the CNI_ARGS kubelet passes (K8S_POD_NAMESPACE=...;K8S_POD_NAME=...).
type K8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // names fixed by kubelet
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// parseConfig reads stdin's config; prevResult is parsed into conf.PrevResult when present.
func parseConfig(stdin []byte) (*PluginConf, error) {
	conf := &PluginConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "sluice-cni: the network configuration is not valid JSON", err.Error())
	}
	if err := version.ParsePrevResult(&conf.NetConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "sluice-cni: cannot parse prevResult; is sluice-cni chained after a primary plugin that returns a result?", err.Error())
	}
	if conf.ProxySocket == "" {
		conf.ProxySocket = defaultProxySocket
	}
	if conf.TimeoutMs == 0 {
		conf.TimeoutMs = defaultTimeoutMs
	}
	if conf.TimeoutMs < 0 || conf.TimeoutMs > 120000 {
		return nil, invalidConfig("timeoutMs must be from 1 to 120000 (milliseconds), got %d", conf.TimeoutMs)
	}
	for _, p := range append(append([]int{}, conf.ExcludeOutboundPorts...), conf.ExcludeInboundPorts...) {
		if p < 1 || p > 65535 {
			return nil, invalidConfig("excluded ports must be from 1 to 65535, got %d", p)
		}
	}
	for _, c := range append(append([]string{}, conf.ExcludeOutboundCIDRs...), conf.ExcludeInboundSources...) {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return nil, invalidConfig("%q in excludeOutboundCIDRs/excludeInboundSources is not a CIDR (write 10.0.0.0/8, or 10.0.0.1/32 for one address)", c)
		}
	}
	for _, ns := range conf.ExcludeNamespaces {
		if ns == "" {
			return nil, invalidConfig("excludeNamespaces has an empty name")
		}
	}
	return conf, nil
}

func invalidConfig(format string, args ...any) error {
	return types.NewError(types.ErrInvalidNetworkConfig, "sluice-cni: invalid plugin config: "+fmt.Sprintf(format, args...), "fix the sluice-cni entry of the conflist (docs/capture.md lists its fields)")
}

func parseArgs(args string) (*K8sArgs, error) {
	k := &K8sArgs{}
	if err := types.LoadArgs(args, k); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "sluice-cni: CNI_ARGS is not a list of KEY=VALUE pairs separated by ';'", err.Error())
	}
	return k, nil
}

// optedOut says why a pod is left alone, or "" when it is captured.
func (c *PluginConf) optedOut(k *K8sArgs) string {
	if v := c.RuntimeConfig.PodAnnotations[optOutAnnotation]; v == "disabled" {
		return fmt.Sprintf("annotation %s=disabled", optOutAnnotation)
	}
	ns := string(k.K8S_POD_NAMESPACE)
	for _, excluded := range c.ExcludeNamespaces {
		if ns == excluded {
			return fmt.Sprintf("namespace %s is in excludeNamespaces", ns)
		}
	}
	return ""
}

func (c *PluginConf) exclusions() Exclusions {
	e := Exclusions{
		OutboundPorts: c.ExcludeOutboundPorts, InboundPorts: c.ExcludeInboundPorts,
		OutboundCIDRs: c.ExcludeOutboundCIDRs, InboundSources: c.ExcludeInboundSources,
	}
	for _, s := range []*[]int{&e.OutboundPorts, &e.InboundPorts} {
		if *s == nil {
			*s = []int{}
		}
	}
	for _, s := range []*[]string{&e.OutboundCIDRs, &e.InboundSources} {
		if *s == nil {
			*s = []string{}
		}
	}
	return e
}

// podAddresses: the pod's addresses and gateways (IPv4 and IPv6) from the primary plugin's result.
func podAddresses(prev types.Result) (ips, gateways []string, err error) {
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return nil, nil, types.NewError(types.ErrDecodingFailure, "sluice-cni: cannot read prevResult", err.Error())
	}
	ips, gateways = []string{}, []string{}
	for _, ip := range res.IPs {
		ips = append(ips, ip.Address.String())
		if ip.Gateway != nil {
			gateways = append(gateways, ip.Gateway.String())
		}
	}
	return ips, gateways, nil
}
