"""The component-discovery directive (the contract's §4.6 and §4.7): a component's pods learn the
addresses and ports of their instance's other components through environment variables.

`rolebasedgroup.workloads.x-k8s.io/component-discovery` (on the component, else its template) is
JSON `{"addressRefs": [{"env", "component", "index"}], "portRefs": [{"env", "component", "portName",
"index"}]}`. An address is the FQDN of that component's pod `index`; a port is the port the port
allocator gave that pod under that name, else the container port of that name in the component's
template. The variables go into every container and init container,
before the user's own (a user's variable of the same name wins); the directive itself is not copied
onto the pods. A reference to a component or port the instance does not have is left out.
"""

from __future__ import annotations

from collections.abc import Callable

from ..api import component_discovery as directive_value
from ..api.component_discovery import ANNOTATION


def directive(component: dict) -> str | None:
    """The directive's text: the component's own annotation, else its template's."""
    own = (component.get("annotations") or {}).get(ANNOTATION)
    template = (((component.get("template") or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    return own or template


def discovery_env(
    namespace: str,
    components: list[dict],
    component: dict,
    pod_name: Callable[[str, int], str],
    allocated: Callable[[str, str, str], int | None] = lambda component, pod, name: None,
) -> list[dict]:
    """The variables the directive of `component` asks for; `pod_name(component, index)` names a pod
    of the same instance, and `allocated(component, pod, port name)` is a port the port allocator
    gave it, which a portRef takes before a container port of that name. A malformed directive
    (admission refuses one, but a stored object may predate that check) contributes only the
    references that can be read: a reconcile pass never fails on it."""
    address_refs, port_refs, _ = directive_value.parse(directive(component))
    by_name = {c.get("name"): c for c in components if isinstance(c.get("name"), str)}
    env = []
    for ref in address_refs:
        target = by_name.get(ref.component)
        if target is None or not target.get("serviceName"):
            continue
        host = pod_name(target["name"], ref.index)
        env.append({"name": ref.env, "value": f"{host}.{target['serviceName']}.{namespace}.svc.cluster.local"})
    for ref in port_refs:
        target = by_name.get(ref.component)
        if target is None:
            continue
        spec = (target.get("template") or {}).get("spec") or {}
        ports = [p for c in spec.get("containers") or [] for p in c.get("ports") or []]
        port = allocated(target["name"], pod_name(target["name"], ref.index), ref.port_name)
        if port is None:
            port = next((p.get("containerPort") for p in ports if p.get("name") == ref.port_name), None)
        if port is not None:
            env.append({"name": ref.env, "value": str(port)})
    return env


def with_env(spec: dict, env: list[dict]) -> dict:
    """The pod spec with `env` first in every container and init container (not over a user's own)."""
    if not env:
        return spec
    spec = dict(spec)
    for field in ("initContainers", "containers"):
        if spec.get(field):
            spec[field] = [
                {
                    **c,
                    "env": [e for e in env if e["name"] not in {v.get("name") for v in c.get("env") or []}]
                    + list(c.get("env") or []),
                }
                for c in spec[field]
            ]
    return spec
