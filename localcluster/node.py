"""The real node beside the kwok nodes: a kubelet on containerd and runc, pods wired to a host bridge
by the CNI bridge plugin, CoreDNS answering cluster names, and a device plugin serving the example's
GPUs and eRDMA devices.

The node is tainted (``TAINT``): only pods that tolerate it land there. A namespace labelled
``LABEL`` gets that toleration and a node selector by default (the API server's
PodTolerationRestriction and PodNodeSelector admission plugins), and ``RESOURCE_POLICY`` scales its
pods' CPU and memory requests to what this small machine has. So ``examples/sglang_pd.yaml``
applies unchanged in such a namespace (``default`` is one) and its pods start for real.

``stop()`` undoes everything ``start()`` did: no process, mount, network interface, namespace or
cgroup is left behind (``leftovers()`` lists any that are).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from . import components, hostpackages, images

NODE_NAME = "real-0"
LABEL = "rbg-operator.local/real-node"  # on the node, and on namespaces whose pods run there
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
BRIDGE = "rbg0"
NODE_IP = "10.89.0.1"  # the bridge's address: the node's InternalIP, the pods' gateway and their DNS server
POD_SUBNET = "10.89.0.0/24"
CGROUP_ROOT = "rbg-node"  # under every cgroup v1 hierarchy; the kubelet's pods and QoS classes go below
DEVICES = {"nvidia.com/gpu": 16, "aliyun/erdma": 16}
PROCESSES = ("containerd", "rbg-device-plugin", "kubelet", "coredns", "kube-proxy")
KUBE_PROXY_TABLES = ("ip kube-proxy", "ip6 kube-proxy")  # all kube-proxy's nftables mode writes
NETNS_DIR = Path("/run/netns")  # where containerd's CRI pins pod network namespaces (fixed)
# Which local cluster (its state directory) runs the real node: the node's cgroups, mounts, links and
# nftables tables are the host's, one set for the machine, so only that cluster may take them down.
OWNER_FILE = Path("/run/rbg-operator-real-node")
RUNTIME_RUN_DIR = Path("/run/containerd")  # the shims' sockets and runc's state (fixed in containerd 2.x)
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")  # fixed by the device-plugin API
# The CNI bridge plugin turns on IPv4 forwarding for its gateway; stop() puts back what start() found.
SYSCTLS = (Path("/proc/sys/net/ipv4/ip_forward"),)
# Requests scaled for a 2-core machine: a pod asking for 16 CPUs and 128 GiB still starts, with
# its limits, GPUs and devices as written.
SCALED_REQUESTS = {"cpu": "10m", "memory": "32Mi"}


def node_dir() -> Path:
    from .cluster import state_dir

    return state_dir() / "node"


def runtime_root() -> Path:
    """containerd's content store and snapshots: outside the repo, so imported images survive `down`."""
    return components.cache_dir() / "containerd"


def socket_path() -> Path:
    return node_dir() / "containerd.sock"


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup v1 hierarchy (the kubelet creates its cgroups in each)."""
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mountpoint, fstype, *_ = line.split()
        if fstype == "cgroup":
            mounts.append(Path(mountpoint))
    return mounts


def _containerd_config(binaries: dict[str, Path]) -> str:
    root = node_dir()
    cni_bin = binaries["bridge"].parent
    return f"""version = 3
root = "{runtime_root() / "root"}"
state = "{root / "containerd-state"}"
oom_score = 0  # lowering it needs CAP_SYS_RESOURCE, which this machine withholds

[grpc]
  address = "{socket_path()}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{images.PAUSE.tags[0]}"

[plugins."io.containerd.cri.v1.runtime"]
  # Containers may not ask for an OOM score below containerd's own (no CAP_SYS_RESOURCE here).
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{root / "cni"}"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "{binaries["runc"]}"
      SystemdCgroup = false
"""


def _cni_config() -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "rbg",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves the machine; masquerading would need iptables
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.89.0.10", "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node_dir() / "cni-ipam"),
                },
            }
        ],
    }


def _kubelet_config(port: int, health_port: int) -> dict:
    root = node_dir()
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": health_port,
        # The API server reaches the kubelet (logs, exec, port-forward) without a client certificate.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",  # no systemd here
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,  # this machine has cgroup v1 only
        "oomScoreAdj": 0,  # see containerd's oom_score
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{socket_path()}",
        "clusterDomain": "cluster.local",
        "clusterDNS": [NODE_IP],
        "resolvConf": str(root / "resolv.conf"),
        "podLogsDir": str(root / "pod-logs"),
        "registerWithTaints": [TAINT],
        "serializeImagePulls": False,
        # The images are imported, never pulled: nothing may garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared build machine's disk and memory are not the node's to police.
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "syncFrequency": "10s",
        "nodeStatusReportFrequency": "1m",
    }


def _kube_proxy_config(kubeconfig: Path, health_port: int, metrics_port: int) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "healthzBindAddress": f"127.0.0.1:{health_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_SUBNET,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # A pod reaching a Service backed by a pod on the same bridge: without masquerading, the reply
        # would skip the translation back.
        "nftables": {"masqueradeAll": True},
        # Zeros leave the machine's conntrack settings alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }


def _corefile(kubeconfig: Path) -> str:
    return f"""cluster.local:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local {{
        kubeconfig {kubeconfig} rbg-local
        pods insecure
        ttl 2
    }}
}}
.:53 {{
    bind {NODE_IP}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""


def resource_policy() -> list[dict]:
    """The MutatingAdmissionPolicy (and its binding) that scales CPU and memory requests in the real
    node's namespaces: the example asks for 16 CPUs and 128 GiB per server, this machine has 2 cores."""
    containers = (
        "object.spec.containers.map(c, Object.spec.containers{name: c.name, "
        "resources: Object.spec.containers.resources{requests: " + json.dumps(SCALED_REQUESTS).replace('"', "'") + "}})"
    )
    name = "rbg-local-real-node-requests"
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "matchConstraints": {
                    "resourceRules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ]
                },
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "mutations": [
                    {
                        "patchType": "ApplyConfiguration",
                        "applyConfiguration": {
                            "expression": f"Object{{spec: Object.spec{{containers: {containers}}}}}"
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "matchResources": {"namespaceSelector": {"matchLabels": {LABEL: "true"}}},
            },
        },
    ]


def namespace_defaults() -> dict:
    """The labels and annotations that send a namespace's pods to the real node."""
    toleration = {"key": TAINT["key"], "operator": "Exists", "effect": TAINT["effect"]}
    return {
        "labels": {LABEL: "true"},
        "annotations": {
            "scheduler.alpha.kubernetes.io/node-selector": f"{LABEL}=true",
            "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration]),
        },
    }


def _saved_sysctls() -> Path:
    return node_dir() / "sysctls-before.json"


def _save_sysctls() -> None:
    if not _saved_sysctls().exists():  # a crashed run's file holds the machine's own values: keep it
        _saved_sysctls().write_text(json.dumps({str(p): p.read_text().strip() for p in SYSCTLS if p.exists()}))


def _restore_sysctls() -> None:
    try:
        saved = json.loads(_saved_sysctls().read_text())
    except (OSError, ValueError):
        return
    for path, value in saved.items():
        Path(path).write_text(value)
    _saved_sysctls().unlink()


def _bridge_up() -> None:
    if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _ctr(binaries: dict[str, Path], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(str(binaries["ctr"]), f"--address={socket_path()}", "--namespace=k8s.io", *args, check=check)


def _import_images(binaries: dict[str, Path], say) -> None:
    """Load the locally built images into containerd once per image build."""
    for archive in images.build_all():
        marker = runtime_root() / f"imported-{archive.name}"
        if marker.exists():
            continue
        say(f"importing {archive.name} into containerd")
        _ctr(binaries, "images", "import", "--no-unpack=false", str(archive))
        marker.touch()


def owned_elsewhere(mine: Path) -> Path | None:
    """The state directory of another local cluster that is running the real node, if any (a
    cluster whose processes are all gone owns nothing any more)."""
    from .cluster import _alive

    try:
        owner = Path(OWNER_FILE.read_text().strip())
    except OSError:
        return None
    if owner.resolve() == mine.resolve():
        return None
    try:
        pids = json.loads((owner / "state.json").read_text()).get("pids", {})
    except (OSError, ValueError):
        return None
    return owner if any(_alive(pid) for pid in pids.values()) else None


def start(binaries: dict[str, Path], state: dict, start_process, wait, kubectl, say) -> None:
    """Start the node's processes (in the cluster's state, so `down` sees them) and wait until the
    node is Ready with its devices."""
    from .cluster import free_port, kubeconfig_path, state_dir

    if (owner := owned_elsewhere(state_dir())) is not None:
        raise SystemExit(
            f"localcluster: the real node already runs for the cluster in {owner}, and a machine has one: "
            f"stop that cluster (RBG_CLUSTER_DIR={owner} make cluster-down) or start this one without it "
            f"(RBG_REAL_NODE=0)"
        )
    root = node_dir()
    stop(say)  # whatever a crashed run left behind
    OWNER_FILE.write_text(str(state_dir().resolve()))
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("cni", "pod-logs", "kubelet", "cni-ipam"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    runtime_root().mkdir(parents=True, exist_ok=True)
    _save_sysctls()
    for hierarchy in _cgroup_hierarchies():
        (hierarchy / CGROUP_ROOT).mkdir(exist_ok=True)
    _bridge_up()
    (root / "cni" / "10-rbg.conflist").write_text(json.dumps(_cni_config(), indent=2))
    (root / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")
    (root / "containerd.toml").write_text(_containerd_config(binaries))

    env = {**os.environ, "PATH": f"{binaries['containerd'].parent}:{os.environ.get('PATH', '')}"}
    start_process("containerd", [str(binaries["containerd"]), f"--config={root / 'containerd.toml'}"], state, env)
    wait("containerd serving", lambda: _ctr(binaries, "version", check=False).returncode == 0, 60, state, "containerd")
    _import_images(binaries, say)

    (root / "Corefile").write_text(_corefile(kubeconfig_path()))
    start_process("coredns", [str(binaries["coredns"]), "-conf", str(root / "Corefile")], state)

    port, health = free_port(), free_port()
    state["ports"]["kubelet-healthz"] = health
    (root / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(port, health)))
    start_process(
        "kubelet",
        [
            str(binaries["kubelet"]),
            f"--config={root / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig_path()}",
            f"--root-dir={root / 'kubelet'}",
            f"--cert-dir={root / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            f"--node-labels={LABEL}=true",
        ],
        state,
        env,
    )
    hostpackages.ensure("nftables")  # kube-proxy programs Services through the nft command
    proxy_health, proxy_metrics = free_port(), free_port()
    state["ports"].update({"kube-proxy-healthz": proxy_health, "kube-proxy-metrics": proxy_metrics})
    (root / "kube-proxy.yaml").write_text(
        yaml.safe_dump(_kube_proxy_config(kubeconfig_path(), proxy_health, proxy_metrics))
    )
    start_process("kube-proxy", [str(binaries["kube-proxy"]), f"--config={root / 'kube-proxy.yaml'}"], state)
    start_process(
        "rbg-device-plugin",
        [str(binaries["rbg-device-plugin"]), *[f"--resource={name}={n}" for name, n in DEVICES.items()]],
        state,
    )
    wait("the real node Ready with its devices", lambda: _node_ready(kubectl), 120, state, "kubelet")


def _node_ready(kubectl) -> bool:
    out = kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    node = json.loads(out.stdout)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    allocatable = node["status"].get("allocatable", {})
    return ready and all(allocatable.get(name) == str(n) for name, n in DEVICES.items())


# ---- teardown -----------------------------------------------------------------------------------


def _processes_under(paths: list[Path]) -> list[int]:
    """Processes whose executable lies under one of `paths` (the node's binaries)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if any(exe.startswith(str(path) + "/") for path in paths):
            found.append(int(entry.name))
    return found


def _cgroup_pids() -> list[int]:
    pids = set()
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / CGROUP_ROOT
        if top.is_dir():
            for procs in top.rglob("cgroup.procs"):
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except OSError:
                    pass
    return sorted(pids)


def _our_mounts() -> list[str]:
    """Mount points the node made: pod volumes, container root filesystems, network namespaces."""
    prefixes = [str(node_dir()), str(runtime_root()), str(NETNS_DIR), str(RUNTIME_RUN_DIR)]
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == prefix or point.startswith(prefix + "/") for prefix in prefixes):
            points.append(point)
    return points


def _node_binary_dirs() -> list[Path]:
    return [components.binary_dir(components.MODULES_BY_NAME[name]) for name in ("node", "containerd", "runc")]


def _interfaces() -> list[str]:
    """The bridge and the host ends of pod veths attached to it."""
    out = _run("ip", "-o", "link", "show", check=False).stdout
    names = []
    for line in out.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == BRIDGE or f"master {BRIDGE} " in line:
            names.append(name)
    return names


def leftovers() -> list[str]:
    """Whatever of the node is still here: empty after `stop()`."""
    found = [f"process {pid}" for pid in _processes_under(_node_binary_dirs())]
    found += [f"container process {pid}" for pid in _cgroup_pids()]
    found += [f"mount {point}" for point in _our_mounts()]
    found += [f"interface {name}" for name in _interfaces()]
    found += [f"cgroup {h / CGROUP_ROOT}" for h in _cgroup_hierarchies() if (h / CGROUP_ROOT).exists()]
    if NETNS_DIR.is_dir():
        found += [f"network namespace {p}" for p in NETNS_DIR.iterdir() if p.name.startswith("cni-")]
    if DEVICE_PLUGIN_DIR.is_dir():
        found += [f"socket {p}" for p in DEVICE_PLUGIN_DIR.iterdir()]
    if RUNTIME_RUN_DIR.exists():
        found.append(f"directory {RUNTIME_RUN_DIR}")
    found += [f"nftables table {table}" for table in _kube_proxy_tables()]
    if _saved_sysctls().exists():
        found.append(f"sysctls not restored: {_saved_sysctls().read_text()}")
    return found


def _kube_proxy_tables() -> list[str]:
    if shutil.which("nft") is None:
        return []
    listed = _run("nft", "list", "tables", check=False).stdout.splitlines()
    return [table for table in KUBE_PROXY_TABLES if f"table {table}" in listed]


def _kill_all(pids_of, what: str, say) -> None:
    for _ in range(50):
        pids = pids_of()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    say(f"warning: {what} still running: {pids_of()}")


def stop(say) -> None:
    """Undo the node. The node's own daemons are stopped by the cluster first (they are in its
    state); this removes what they leave: containers, shims, mounts, namespaces, links, cgroups."""
    # Containers first (the kubelet is gone, so nothing restarts them), then any shim or daemon left.
    _kill_all(_cgroup_pids, "container processes", say)
    _kill_all(lambda: _processes_under(_node_binary_dirs()), "node processes", say)
    for point in reversed(_our_mounts()):  # innermost first
        _run("umount", "-l", point, check=False)
    if NETNS_DIR.is_dir():
        for netns in NETNS_DIR.iterdir():
            if netns.name.startswith("cni-"):
                netns.unlink(missing_ok=True)
    for name in _interfaces():
        _run("ip", "link", "delete", name, check=False)
    for table in _kube_proxy_tables():
        _run("nft", "delete", "table", *table.split(), check=False)
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / CGROUP_ROOT
        if top.is_dir():
            for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                sub.rmdir()
            top.rmdir()
    if DEVICE_PLUGIN_DIR.is_dir():
        shutil.rmtree(DEVICE_PLUGIN_DIR, ignore_errors=True)
        for parent in (DEVICE_PLUGIN_DIR.parent,):  # /var/lib/kubelet, made for the sockets alone
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
    shutil.rmtree(RUNTIME_RUN_DIR, ignore_errors=True)
    OWNER_FILE.unlink(missing_ok=True)
    for sub in ("kubelet", "containerd-state", "cni-ipam"):
        shutil.rmtree(node_dir() / sub, ignore_errors=True)
    _restore_sysctls()
