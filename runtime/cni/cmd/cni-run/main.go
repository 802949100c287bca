// cni-run: invokes a conflist the way a container runtime does, through libcni, for tests
// (Debian ships no cnitool). Prints the result, or the CNI error JSON and exits 1.
//
//	cni-run add|del|check|status|gc CONFLIST NETNS CONTAINER_ID [CNI_ARGS] [RUNTIME_CONFIG_JSON]
//
// CNI_PATH says where plugins are; the cache dir is CNI_CACHE_DIR (default /var/lib/cni).

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: cni-run add|del|check|status|gc CONFLIST NETNS CONTAINER_ID [CNI_ARGS] [RUNTIME_CONFIG_JSON]")
		os.Exit(2)
	}
	command, file, netns, id := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		fail(err)
	}
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0"}
	if len(os.Args) > 5 && os.Args[5] != "" {
		for _, kv := range strings.Split(os.Args[5], ";") {
			k, v, _ := strings.Cut(kv, "=")
			rt.Args = append(rt.Args, [2]string{k, v})
		}
	}
	if len(os.Args) > 6 && os.Args[6] != "" {
		if err := json.Unmarshal([]byte(os.Args[6]), &rt.CapabilityArgs); err != nil {
			fail(fmt.Errorf("RUNTIME_CONFIG_JSON: %w", err))
		}
	}
	cacheDir := os.Getenv("CNI_CACHE_DIR")
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), cacheDir, nil)
	ctx := context.Background()
	switch command {
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		_ = res.Print()
	case "del":
		err = cni.DelNetworkList(ctx, list, rt)
	case "check":
		err = cni.CheckNetworkList(ctx, list, rt)
	case "status":
		err = cni.GetStatusNetworkList(ctx, list)
	case "gc":
		err = cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: id, IfName: "eth0"}}})
	default:
		fail(fmt.Errorf("unknown command %q", command))
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	var e *types.Error
	if errors.As(err, &e) {
		_ = e.Print()
	} else {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"code": 999, "msg": err.Error()})
	}
	os.Exit(1)
}
