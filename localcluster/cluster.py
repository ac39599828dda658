"""Start and stop the local control plane: etcd, kube-apiserver, kube-controller-manager,
the stock kube-scheduler, the coscheduling scheduler, kwok with fake GPU nodes and,
when it starts, the LeaderWorkerSet controller.

Everything runs as plain processes on loopback, with state under one directory
(``.cluster/`` in the repo unless ``RBG_CLUSTER_DIR`` says otherwise).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from . import components, node, pki

REPO = Path(__file__).resolve().parent.parent
NODES_FILE = Path(__file__).resolve().parent / "nodes.yaml"
# Native gang scheduling: the scheduling.k8s.io/v1beta1 Workload and PodGroup (GenericWorkload, beta and
# off by default in 1.37) and the v1alpha3 CompositePodGroup (alpha, which needs
# TopologyAwareWorkloadScheduling). StatefulSet maxUnavailable is on by default from 1.37.
FEATURE_GATES = "GenericWorkload=true,CompositePodGroup=true,TopologyAwareWorkloadScheduling=true"
RUNTIME_CONFIG = "scheduling.k8s.io/v1beta1=true,scheduling.k8s.io/v1alpha3=true"
COSCHEDULER_NAME = "scheduler-plugins-scheduler"
SERVICE_RANGE = "10.0.0.0/24"
CONTROL_PLANE = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "coscheduler",
    "kwok",
    "pod-reaper",
    "lws-controller",
    *node.PROCESSES,
)
SUPERVISOR = Path(__file__).with_name("supervise.py")  # restarts a crashed component, as a kubelet would
# Raised client limits so the controller-manager and schedulers are never the bottleneck of a benchmark.
QPS, BURST = 500, 1000


def state_dir() -> Path:
    return Path(os.environ.get("RBG_CLUSTER_DIR") or REPO / ".cluster")


def kubeconfig_path() -> Path:
    return state_dir() / "kubeconfig"


def node_shape() -> dict:
    """The fake nodes' shape, as tests should read it."""
    return yaml.safe_load(NODES_FILE.read_text())


def _say(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _load_state() -> dict:
    try:
        return json.loads((state_dir() / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict) -> None:
    (state_dir() / "state.json").write_text(json.dumps(state, indent=2))


def _ssl_context(pki_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return context


def _apiserver_ready(state: dict) -> bool:
    try:
        url = f"https://127.0.0.1:{state['ports']['apiserver']}/readyz"
        with urllib.request.urlopen(url, context=_ssl_context(state_dir() / "pki"), timeout=3) as response:
            return response.status == 200
    except (OSError, KeyError, ssl.SSLError):
        return False


def is_up() -> bool:
    state = _load_state()
    pids = state.get("pids", {})
    required = [name for name in pids if name in CONTROL_PLANE]
    return bool(pids) and all(_alive(pids[name]) for name in required) and _apiserver_ready(state)


def stopped_components() -> list[str]:
    """Control-plane components that were started and are no longer running."""
    pids = _load_state().get("pids", {})
    return [name for name in CONTROL_PLANE if name in pids and not _alive(pids[name])]


def log_tail(name: str, lines: int = 20) -> list[str]:
    """The last lines of a component's log, for a failure report."""
    try:
        with open(state_dir() / "logs" / f"{name}.log", "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            return log.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def log_sizes() -> dict[str, int]:
    """How long each component's log is now: the point a later `restarts_since` reads from."""
    logs = state_dir() / "logs"
    return {name: (logs / f"{name}.log").stat().st_size for name in CONTROL_PLANE if (logs / f"{name}.log").exists()}


def restarts_since(sizes: dict[str, int], context: int = 12) -> list[str]:
    """Each supervisor restart logged after `sizes`, with the log lines before it (the crash)."""
    from .supervise import RESTART_MARK

    report = []
    for name, size in sizes.items():
        with open(state_dir() / "logs" / f"{name}.log", "rb") as log:
            log.seek(size)
            lines = log.read().decode(errors="replace").splitlines()
        previous = 0
        for index, line in enumerate(lines):
            if line.startswith(RESTART_MARK):
                # A Go crash prints its cause first and then every goroutine; show the cause.
                panics = [i for i in range(previous, index) if lines[i].startswith(("panic:", "fatal error:"))]
                first = panics[0] if panics else max(previous, index - context)
                report.append(f"{name}: {line}")
                report += ["    " + text[:300] for text in lines[first : min(index, first + context)]]
                previous = index + 1
    return report


def _write_kubeconfig(path: Path, server: str, pki_dir: Path) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki_dir / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rbg-local", "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")},
            }
        ],
        "contexts": [{"name": "rbg-local", "context": {"cluster": "rbg-local", "user": "admin"}}],
        "current-context": "rbg-local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def start_process(name: str, argv: list[str], env: dict | None = None) -> int:
    """Run a further process (the demo's operator) that `down` stops with the cluster."""
    state = _load_state()
    pid = state.get("pids", {}).get(name)
    if pid and _alive(pid):
        return pid
    _start(name, argv, state, env)
    return state["pids"][name]


def _start(name: str, argv: list[str], state: dict, env: dict | None = None) -> None:
    log = open(state_dir() / "logs" / f"{name}.log", "ab")
    command = [sys.executable, str(SUPERVISOR), name, "--", *argv] if name in CONTROL_PLANE else argv
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=state_dir(),
        env=env,
    )
    state.setdefault("pids", {})[name] = proc.pid
    state.setdefault("argv", {})[name] = argv
    _save_state(state)


def process_alive(name: str) -> bool:
    pid = _load_state().get("pids", {}).get(name)
    return bool(pid) and _alive(pid)


def restart(*names: str) -> None:
    """Kill components (SIGKILL, as a crash) and start them again with the same arguments;
    for fault tests. Waits for the apiserver to be ready again."""
    state = _load_state()
    for name in names:
        _signal_group(state["pids"][name], signal.SIGKILL)
    for name in names:
        deadline = time.monotonic() + 10
        while _alive(state["pids"][name]) and time.monotonic() < deadline:
            time.sleep(0.1)
    for name in names:
        if name in state.get("ports", {}) or name == "kube-apiserver":
            _wait_port_closed(state["ports"]["apiserver" if name == "kube-apiserver" else name])
        _start(name, state["argv"][name], state)
    if "etcd" in names:
        etcd_url = f"http://127.0.0.1:{state['ports']['etcd']}"
        _wait("etcd answering", lambda: _http_ok(f"{etcd_url}/health"), 30, state, "etcd")
    _wait("kube-apiserver ready", lambda: _apiserver_ready(state), 90, state, "kube-apiserver")


def _wait(what: str, check, timeout: float, state: dict, log_name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if log_name and not _alive(state["pids"][log_name]):
            break
        time.sleep(0.5)
    hint = f"; see {state_dir() / 'logs' / (log_name + '.log')}" if log_name else ""
    raise SystemExit(
        f"localcluster: {what} did not happen within {timeout:.0f}s{hint}. "
        f"Run `make cluster-down` and retry; the logs say why."
    )


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    state = _load_state()
    argv = [state["binaries"]["kubectl"], f"--kubeconfig={kubeconfig_path()}", *args]
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"localcluster: kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _volcano_crds() -> list[Path]:
    """Volcano's PodGroup and Queue CRDs, generated from the pinned volcano.sh/apis types."""
    out = state_dir() / "crds" / f"volcano-{components.MODULES_BY_NAME['volcano'].stamp()}"
    if not (out / "scheduling.volcano.sh_podgroups.yaml").exists():
        out.mkdir(parents=True, exist_ok=True)
        generator = components.binary_dir(components.MODULES_BY_NAME["volcano"]) / "controller-gen"
        subprocess.run(
            [str(generator), "crd", "paths=volcano.sh/apis/pkg/apis/scheduling/v1beta1", f"output:crd:dir={out}"],
            cwd=components.GO_DIR / "volcano",
            env=components.go_env("volcano"),
            check=True,
            capture_output=True,
        )
    return [out / "scheduling.volcano.sh_podgroups.yaml", out / "scheduling.volcano.sh_queues.yaml"]


def third_party_crds() -> list[Path]:
    """CRD manifests read from the pinned modules themselves, never copied into this repo."""
    lws = components.module_dir("sigs.k8s.io/lws", "kwok")
    plugins = components.module_dir("sigs.k8s.io/scheduler-plugins", "coscheduling")
    return _volcano_crds() + [
        lws / "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml",
        lws / "config/crd/bases/disaggregatedset.x-k8s.io_disaggregatedsets.yaml",  # the LWS controller watches it
        plugins / "config/crd/bases/scheduling.x-k8s.io_podgroups.yaml",
    ]


def third_party_crd_names() -> list[str]:
    return [yaml.safe_load(path.read_text())["metadata"]["name"] for path in third_party_crds()]


def crd_established(name: str) -> bool:
    # `kubectl wait` fails outright on a CRD whose status is not written yet, so poll instead.
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    return kubectl("get", "crd", name, "-o", jsonpath, check=False).stdout.strip() == "True"


def _kwok_stages() -> list[Path]:
    kwok = components.module_dir("sigs.k8s.io/kwok", "kwok") / "kustomize/stage"
    return [
        kwok / "node/fast/node-initialize.yaml",
        kwok / "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        kwok / "pod/fast/pod-ready.yaml",
        kwok / "pod/fast/pod-complete.yaml",
        # Not kwok's pod-delete stage: it deletes by name, and can hit a re-created pod (see reaper.py).
    ]


def node_manifests() -> str:
    shape = node_shape()
    nodes = []
    for index in range(shape["count"]):
        name = f"{shape['namePrefix']}{index}"
        labels = {
            **shape["labels"],
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "status": {"capacity": shape["capacity"], "allocatable": shape["capacity"]},
            }
        )
    return yaml.safe_dump_all(nodes)


def _start_lws_controller(binaries: dict[str, Path], state: dict) -> None:
    """The LeaderWorkerSet controller with its admission webhooks served on loopback.

    Its webhook configurations come from the module's own manifests (with the module's own
    kustomize patches applied); only the address changes, from an in-cluster Service to
    https://127.0.0.1, signed by the local CA.
    """
    root, pki_dir = state_dir(), state_dir() / "pki"
    certs = root / "lws-certs"
    certs.mkdir(exist_ok=True)
    (certs / "tls.crt").write_bytes((pki_dir / "apiserver.crt").read_bytes())
    (certs / "tls.key").write_bytes((pki_dir / "apiserver.key").read_bytes())
    port, health = free_port(), free_port()
    state["ports"]["lws-webhook"] = port
    config = {
        "apiVersion": "config.lws.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(certs)},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "clientConnection": {"qps": QPS, "burst": BURST},
    }
    (root / "lws-config.yaml").write_text(yaml.safe_dump(config))
    _start(
        "lws-controller",
        [str(binaries["lws-controller"]), f"--config={root / 'lws-config.yaml'}", f"--kubeconfig={kubeconfig_path()}"],
        state,
    )
    _wait("LeaderWorkerSet webhook serving", lambda: _https_listening(port), 60, state, "lws-controller")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=_lws_webhooks(port))


def _https_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _lws_webhooks(port: int) -> str:
    import jsonpatch

    source = components.module_dir("sigs.k8s.io/lws", "kwok") / "config/webhook"
    patches = {
        "MutatingWebhookConfiguration": "mutating-patch.yaml",
        "ValidatingWebhookConfiguration": "validating-patch.yaml",
    }
    ca_bundle = base64.b64encode((state_dir() / "pki" / "ca.crt").read_bytes()).decode()
    documents = []
    for doc in yaml.safe_load_all((source / "manifests.yaml").read_text()):
        doc = jsonpatch.apply_patch(doc, yaml.safe_load((source / patches[doc["kind"]]).read_text()))
        doc["metadata"]["name"] = f"lws-{doc['metadata']['name']}"
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
        documents.append(doc)
    return yaml.safe_dump_all(documents)


def _coscheduler_config(path: Path) -> None:
    config = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": {"leaderElect": False},
        "clientConnection": {"kubeconfig": str(kubeconfig_path()), "qps": QPS, "burst": BURST},
        "profiles": [
            {
                "schedulerName": COSCHEDULER_NAME,
                "plugins": {
                    "multiPoint": {"enabled": [{"name": "Coscheduling"}]},
                    "queueSort": {"enabled": [{"name": "Coscheduling"}], "disabled": [{"name": "*"}]},
                },
                "pluginConfig": [{"name": "Coscheduling", "args": {"permitWaitingTimeSeconds": 10}}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))


def up() -> None:
    if is_up():
        status()
        return
    if _load_state().get("pids"):
        _say("a previous cluster is partly running; stopping it first")
        down()
    binaries = components.build_all()
    root = state_dir()
    for sub in ("logs", "etcd", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["rm", "-rf", str(root / "etcd")], check=True)  # every `up` starts from an empty store
    pki_dir = root / "pki"
    pki.ensure_pki(pki_dir)
    for name, path in binaries.items():
        link = root / "bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(path)

    ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver")}
    state = {"ports": ports, "binaries": {k: str(v) for k, v in binaries.items()}, "pids": {}}
    _save_state(state)
    server = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = kubeconfig_path()
    _write_kubeconfig(kubeconfig, server, pki_dir)

    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    _start(
        "etcd",
        [
            str(binaries["etcd"]),
            "--name=local",
            f"--data-dir={root / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=local={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--quota-backend-bytes=8589934592",
        ],
        state,
    )
    _wait("etcd answering", lambda: _http_ok(f"{etcd_url}/health"), 30, state, "etcd")

    _start(
        "kube-apiserver",
        [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}",
            f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--feature-gates={FEATURE_GATES}",
            f"--runtime-config={RUNTIME_CONFIG}",
            # /debug/pprof only when asked for: it shows where the API server's CPU goes (docs/development.md).
            f"--profiling={'true' if os.environ.get('RBG_APISERVER_PROFILING') else 'false'}",
            "--endpoint-reconciler-type=none",  # loopback cannot be an Endpoints address
            # As hardened clusters (OpenShift among them) do: setting blockOwnerDeletion on an owner
            # reference needs `update` on the owner's finalizers, so a missing RBAC rule shows up here.
            # PodNodeSelector and PodTolerationRestriction send a labelled namespace's pods to the real node.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement,PodNodeSelector,PodTolerationRestriction",
            # The real node's name does not resolve; its address does (logs, exec, port-forward).
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ],
        state,
    )
    _wait("kube-apiserver ready", lambda: _apiserver_ready(state), 90, state, "kube-apiserver")

    crd_files = sum((["-f", str(p)] for p in third_party_crds()), [])
    kubectl("apply", "--server-side", *crd_files)
    _wait("third-party CRDs established", lambda: all(map(crd_established, third_party_crd_names())), 60, state)
    kubectl("apply", "--server-side", "-f", "-", stdin=node_manifests())

    common = [
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        f"--kube-api-qps={QPS}",
        f"--kube-api-burst={BURST}",
    ]
    _start(
        "kube-controller-manager",
        [
            str(binaries["kube-controller-manager"]),
            *common,
            f"--service-account-private-key-file={pki_dir / 'sa.key'}",
            f"--root-ca-file={pki_dir / 'ca.crt'}",
            f"--feature-gates={FEATURE_GATES}",
            "--controllers=*,-csrsigning,-csrapproving,-csrcleaner",
            "--concurrent-statefulset-syncs=20",
            "--concurrent-deployment-syncs=20",
            "--concurrent-replicaset-syncs=20",
            "--concurrent-gc-syncs=40",
        ],
        state,
    )
    _start("kube-scheduler", [str(binaries["kube-scheduler"]), *common, f"--feature-gates={FEATURE_GATES}"], state)
    _coscheduler_config(root / "coscheduler.yaml")
    _start(
        "coscheduler", [str(binaries["coscheduler"]), f"--config={root / 'coscheduler.yaml'}", "--secure-port=0"], state
    )
    # The node address is on loopback: nothing the API server might dial for a node (logs, exec)
    # leaves this machine. Pod IPs come from --cidr and are never dialled: the local cluster has no
    # Service-backed webhooks and no proxy.
    _start(
        "kwok",
        [
            str(binaries["kwok"]),
            f"--kubeconfig={kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=127.0.0.2",
            "--node-lease-duration-seconds=40",
            *[f"--config={stage}" for stage in _kwok_stages()],
        ],
        state,
    )
    _start(
        "pod-reaper",
        [
            sys.executable,
            str(Path(__file__).with_name("reaper.py")),
            f"--server={server}",
            f"--ca={pki_dir / 'ca.crt'}",
            f"--cert={pki_dir / 'admin.crt'}",
            f"--key={pki_dir / 'admin.key'}",
        ],
        state,
    )

    _start_lws_controller(binaries, state)
    _save_state(state)
    _wait("fake nodes Ready", _nodes_ready, 60, state, "kwok")
    if real_node_wanted():
        _start_real_node(binaries, state)
    _wait(
        "default ServiceAccount created",
        lambda: kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
        60,
        state,
        "kube-controller-manager",
    )
    for name in ("kube-scheduler", "coscheduler", "kube-controller-manager", "lws-controller"):
        if not _alive(state["pids"][name]):
            raise SystemExit(f"localcluster: {name} exited; see {root / 'logs' / (name + '.log')}")
    status()


def real_node_wanted() -> bool:
    """The real node starts with the cluster unless RBG_REAL_NODE=0 (a quicker start without it)."""
    return os.environ.get("RBG_REAL_NODE", "1") != "0"


def _start_real_node(binaries: dict[str, Path], state: dict) -> None:
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(node.resource_policy()))
    defaults = node.namespace_defaults()
    kubectl("label", "--overwrite", "namespace", "default", *[f"{k}={v}" for k, v in defaults["labels"].items()])
    kubectl(
        "annotate", "--overwrite", "namespace", "default", *[f"{k}={v}" for k, v in defaults["annotations"].items()]
    )
    node.start(binaries, state, _start, _wait, kubectl, _say)
    _save_state(state)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _nodes_ready() -> bool:
    out = kubectl(
        "get",
        "nodes",
        "-l",
        "type=kwok",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
        check=False,
    ).stdout.split()
    return len(out) == node_shape()["count"] and all(s == "True" for s in out)


def status() -> None:
    state = _load_state()
    if not state.get("pids"):
        print("local cluster: not running (start it with `make cluster-up`)")
        return
    print(f"local cluster: kube-apiserver https://127.0.0.1:{state['ports']['apiserver']}")
    print(f"  kubeconfig: {kubeconfig_path()}   (export KUBECONFIG={kubeconfig_path()})")
    print(f"  binaries:   {state_dir() / 'bin'}   (kubectl {components.KUBERNETES_VERSION} is there too)")
    print(f"  logs:       {state_dir() / 'logs'}")
    for name, pid in state["pids"].items():
        print(f"  {name:<24} pid {pid:<8} {'running' if _alive(pid) else 'NOT running'}")


def down() -> None:
    state = _load_state()
    pids = state.get("pids", {})
    # Stop the clients before the apiserver and etcd, so they exit without retry noise.
    for name in reversed(list(pids)):
        _signal_group(pids[name], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        _signal_group(pid, signal.SIGKILL)
    ports = state.get("ports", {})
    for port in ports.values():
        _wait_port_closed(port)
    if (owner := node.owned_elsewhere(state_dir())) is None:
        node.stop(_say)
    else:  # a kwok-only cluster beside one with the real node: the host's node state is not ours
        _say(f"the real node belongs to the cluster in {owner}: left running")
    if pids:
        _say("local cluster stopped")
    state["pids"] = {}
    if state_dir().exists():
        _save_state(state)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_port_closed(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"localcluster: port {port} is still open after stopping the cluster")
