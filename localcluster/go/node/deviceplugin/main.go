// Command rbg-device-plugin serves extended resources (the example's nvidia.com/gpu and aliyun/erdma)
// to the local real node through the kubelet's device-plugin API, so pods that request them are
// admitted and counted by the kubelet exactly as on a GPU node. The devices are names only: a
// container gets environment variables naming its devices, and nothing else.
//
//	rbg-device-plugin --resource nvidia.com/gpu=16 --resource aliyun/erdma=16
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type resourceFlags []string

func (r *resourceFlags) String() string     { return strings.Join(*r, ",") }
func (r *resourceFlags) Set(v string) error { *r = append(*r, v); return nil }

// plugin serves one resource on its own socket, as the API wants one registration per resource.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	devices  []*pluginapi.Device
	socket   string
	server   *grpc.Server
}

func (p *plugin) envName() string {
	// nvidia.com/gpu -> RBG_DEVICES_NVIDIA_COM_GPU
	clean := strings.NewReplacer(".", "_", "/", "_", "-", "_").Replace(p.resource)
	return "RBG_DEVICES_" + strings.ToUpper(clean)
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done() // the devices never change; the kubelet closes the stream when it goes
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, container := range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{p.envName(): strings.Join(container.DevicesIds, ",")},
		})
	}
	return resp, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func (p *plugin) serve() error {
	_ = os.Remove(p.socket)
	listener, err := net.Listen("unix", p.socket)
	if err != nil {
		return err
	}
	p.server = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.server, p)
	go func() { _ = p.server.Serve(listener) }()
	return nil
}

func (p *plugin) register(kubeletSocket string) error {
	conn, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.resource,
	})
	return err
}

func parse(spec, dir string) (*plugin, error) {
	name, count, ok := strings.Cut(spec, "=")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || !strings.Contains(name, "/") {
		return nil, fmt.Errorf("--resource %q: want <domain>/<name>=<count>, e.g. nvidia.com/gpu=8", spec)
	}
	p := &plugin{resource: name}
	short := strings.NewReplacer("/", "-", ".", "-").Replace(name)
	p.socket = filepath.Join(dir, "rbg-"+short+".sock")
	for i := 0; i < n; i++ {
		p.devices = append(p.devices, &pluginapi.Device{ID: fmt.Sprintf("%s-%d", short, i), Health: pluginapi.Healthy})
	}
	return p, nil
}

// identity tells a restarted kubelet apart: it recreates kubelet.sock and forgets every plugin.
func identity(path string) string {
	info, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st := info.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d-%d", st.Ino, info.ModTime().UnixNano())
}

func main() {
	var resources resourceFlags
	dir := flag.String("kubelet-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugin directory")
	flag.Var(&resources, "resource", "<domain>/<name>=<count>; repeat per resource")
	flag.Parse()
	if len(resources) == 0 {
		log.Fatal("give at least one --resource, e.g. --resource nvidia.com/gpu=8")
	}
	var plugins []*plugin
	for _, spec := range resources {
		p, err := parse(spec, *dir)
		if err != nil {
			log.Fatal(err)
		}
		plugins = append(plugins, p)
	}
	kubeletSocket := filepath.Join(*dir, filepath.Base(pluginapi.KubeletSocket))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	registered := ""
	for {
		// (Re)register whenever the kubelet (re)appears or our sockets were removed under us.
		current := identity(kubeletSocket)
		missing := false
		for _, p := range plugins {
			if _, err := os.Stat(p.socket); err != nil {
				missing = true
			}
		}
		if current != "" && (current != registered || missing) {
			ok := true
			for _, p := range plugins {
				if p.server != nil {
					p.server.Stop()
				}
				if err := p.serve(); err != nil {
					log.Printf("serving %s: %v", p.resource, err)
					ok = false
					continue
				}
				if err := p.register(kubeletSocket); err != nil {
					log.Printf("registering %s with the kubelet: %v (retrying)", p.resource, err)
					ok = false
					continue
				}
				log.Printf("registered %s: %d devices", p.resource, len(p.devices))
			}
			if ok {
				registered = current
			}
		}
		select {
		case <-stop:
			for _, p := range plugins {
				if p.server != nil {
					p.server.Stop()
				}
				_ = os.Remove(p.socket)
			}
			return
		case <-time.After(time.Second):
		}
	}
}
