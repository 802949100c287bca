package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConfigDefaults(t *testing.T) {
	conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"sluice-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.ProxySocket != defaultProxySocket || conf.TimeoutMs != defaultTimeoutMs || conf.FailOpen {
		t.Fatalf("defaults: got socket %q timeout %d failOpen %v", conf.ProxySocket, conf.TimeoutMs, conf.FailOpen)
	}
	ex := conf.exclusions()
	if ex.OutboundPorts == nil || ex.InboundPorts == nil || ex.OutboundCIDRs == nil || ex.InboundSources == nil {
		t.Fatalf("exclusions must be empty lists, not null, for the proxy: %+v", ex)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for _, c := range []struct{ conf, msg string }{
		{`{"timeoutMs": -1}`, "timeoutMs must be from 1 to 120000"},
		{`{"excludeInboundPorts": [70000]}`, "excluded ports must be from 1 to 65535, got 70000"},
		{`{"excludeInboundSources": ["node"]}`, `"node" in excludeOutboundCIDRs/excludeInboundSources is not a CIDR`},
		{`{"excludeNamespaces": [""]}`, "excludeNamespaces has an empty name"},
	} {
		_, err := parseConfig([]byte(strings.Replace(c.conf, "{", `{"cniVersion":"1.0.0","name":"n","type":"sluice-cni",`, 1)))
		var e *types.Error
		if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, c.msg) {
			t.Errorf("%s: want code 7 with %q, got %v", c.conf, c.msg, err)
		}
	}
}

func TestOptedOut(t *testing.T) {
	conf, err := parseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"sluice-cni","excludeNamespaces":["kube-system"],
		"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"sluice.dev/capture":"disabled"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := conf.optedOut(&K8sArgs{}); got != "annotation sluice.dev/capture=disabled" {
		t.Errorf("annotation: got %q", got)
	}
	conf.RuntimeConfig.PodAnnotations = nil
	k := &K8sArgs{K8S_POD_NAMESPACE: "kube-system"}
	if got := conf.optedOut(k); got != "namespace kube-system is in excludeNamespaces" {
		t.Errorf("namespace: got %q", got)
	}
	if got := conf.optedOut(&K8sArgs{K8S_POD_NAMESPACE: "default"}); got != "" {
		t.Errorf("default namespace: got %q", got)
	}
}
