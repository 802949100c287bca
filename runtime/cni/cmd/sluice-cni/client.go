// The plugin's side of the node proxy's capture API: JSON over HTTP on the proxy's unix socket
// (`curl --unix-socket /var/run/sluice/cni.sock http://sluice/ready` reaches the same API).

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// CNI error codes of this plugin (100 and up are the plugin's own; 11 and 50 are the spec's).
const (
	ErrTryAgainLater   = 11  // the proxy is not listening yet: the runtime retries ADD later
	ErrNotAvailable    = 50  // STATUS: the proxy is not ready, no pod can be captured
	ErrProxyRefused    = 100 // the proxy answered ADD/DEL with an error (e.g. nft failed)
	ErrRulesTampered   = 101 // CHECK: the pod's redirect rules are missing or differ
	ErrProxyProtocol   = 102 // the proxy's answer could not be understood
	ErrNetnsUnreadable = 103 // the pod's netns cannot be inspected
)

// PodRequest is what ADD, DEL and CHECK send the proxy.
type PodRequest struct {
	ContainerID string      `json:"containerId"`
	IfName      string      `json:"ifName"`
	Netns       string      `json:"netns"`
	Namespace   string      `json:"namespace"`
	Name        string      `json:"name"`
	IPs         []string    `json:"ips,omitempty"`
	Gateways    []string    `json:"gateways,omitempty"`
	Exclude     *Exclusions `json:"exclude,omitempty"`
}

type proxyError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errUnreachable: nothing listens on the socket (absent, refused): the proxy is not running.
var errUnreachable = errors.New("the node proxy is not reachable")

type client struct {
	socket string
	http   *http.Client
}

func newClient(conf *PluginConf) *client {
	timeout := time.Duration(conf.TimeoutMs) * time.Millisecond
	transport := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: timeout}).DialContext(ctx, "unix", conf.ProxySocket)
	}}
	return &client{socket: conf.ProxySocket, http: &http.Client{Transport: transport, Timeout: timeout}}
}

// call posts body to path; a non-2xx answer comes back as a *proxyError.
func (c *client) call(path string, body any) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	res, err := c.http.Post("http://sluice"+path, "application/json", bytes.NewReader(payload))
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("%w on %s (%v)", errUnreachable, c.socket, op.Err)
		}
		return fmt.Errorf("calling the node proxy on %s: %w", c.socket, err)
	}
	defer res.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 == 2 {
		return nil
	}
	pe := &proxyError{}
	if json.Unmarshal(text, pe) != nil || pe.Message == "" {
		return types.NewError(ErrProxyProtocol, fmt.Sprintf("sluice-cni: the node proxy answered %s %d with an unreadable body", path, res.StatusCode), string(text))
	}
	return pe
}

func (e *proxyError) Error() string { return e.Code + ": " + e.Message }
