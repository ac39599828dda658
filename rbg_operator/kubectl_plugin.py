"""`kubectl rbg`: a kubectl plugin for RoleBasedGroups.

    kubectl rbg status NAME                        roles, workloads and pods as a tree
    kubectl rbg rollout history NAME               the group's revisions
    kubectl rbg rollout undo NAME [--to-revision N]  restore a revision's role templates

Installed as the console script `kubectl-rbg`, which kubectl finds on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import kinds, naming
from .api import conversion
from .controller import conditions
from .desired.rollout import revision_label
from .kube import KINDS, Kube

RBG = KINDS[kinds.ROLE_BASED_GROUP]
REVISIONS = KINDS[kinds.CONTROLLER_REVISION]
PODS = KINDS[kinds.POD]
WORKLOADS = [
    KINDS[kinds.STATEFUL_SET],
    KINDS[kinds.DEPLOYMENT],
    KINDS[kinds.LEADER_WORKER_SET],
    KINDS[kinds.ROLE_INSTANCE_SET],
]


class PluginError(Exception):
    pass


async def _group(kube: Kube, namespace: str, name: str) -> dict:
    group = await kube.get(RBG, namespace, name)
    if group is None:
        raise PluginError(f'rolebasedgroup "{name}" not found in namespace "{namespace}"')
    return group


async def _revisions(kube: Kube, namespace: str, group: dict) -> list[dict]:
    items = await kube.list(REVISIONS, namespace, f"{naming.LABEL_GROUP_NAME}={group['metadata']['name']}")
    ours = [
        r
        for r in items
        if any(o.get("uid") == group["metadata"]["uid"] for o in r["metadata"].get("ownerReferences", []))
    ]
    return sorted(ours, key=lambda r: r.get("revision", 0))


def _saved_roles(revision: dict) -> tuple[dict[str, dict], tuple[str, ...]]:
    """A revision's role template fields, and which fields it holds (roles in v1alpha1 in
    revisions recorded while groups were stored in v1alpha1)."""
    data = revision.get("data", {})
    return data.get("roles", {}), tuple(data.get("templateFields") or naming.LEGACY_ROLE_TEMPLATE_FIELDS)


def _restored(role: dict, saved: dict, fields: tuple[str, ...]) -> dict:
    """`role` (v1alpha2) with the revision's template fields in place of its own; replicas and
    everything else stay."""
    if set(fields) <= set(naming.ROLE_TEMPLATE_FIELDS):
        return {k: v for k, v in role.items() if k not in fields} | saved
    # A v1alpha1 revision: put its fields into the role's v1alpha1 form, and back.
    v1 = {k: v for k, v in conversion.role_to_v1(role).items() if k not in fields} | saved
    return conversion.role_to_v2(v1)


def _images(revision: dict) -> str:
    parts = []
    saved, fields = _saved_roles(revision)
    for role, kept in saved.items():
        if not set(fields) <= set(naming.ROLE_TEMPLATE_FIELDS):
            kept = conversion.role_to_v2({"name": role, **kept})
        pattern = kept.get("standalonePattern") or kept.get("leaderWorkerPattern") or {}
        templates = [pattern.get("template") or {}] + [
            c.get("template") or {} for c in (kept.get("customComponentsPattern") or {}).get("components") or []
        ]
        containers = [c for t in templates for c in (t.get("spec") or {}).get("containers") or []]
        images = ",".join(c.get("image", "?") for c in containers) or "(templateRef)"
        parts.append(f"{role}={images}")
    return " ".join(parts)


async def history(kube: Kube, namespace: str, name: str) -> str:
    group = await _group(kube, namespace, name)
    lines = [f"{'REVISION':<10}{'NAME':<40}{'CREATED':<22}ROLES"]
    for revision in await _revisions(kube, namespace, group):
        lines.append(
            f"{revision.get('revision', 0):<10}{revision['metadata']['name']:<40}"
            f"{revision['metadata'].get('creationTimestamp', ''):<22}{_images(revision)}"
        )
    return "\n".join(lines)


async def undo(kube: Kube, namespace: str, name: str, to_revision: int | None) -> str:
    group = await _group(kube, namespace, name)
    revisions = await _revisions(kube, namespace, group)
    if to_revision is None:
        if len(revisions) < 2:
            raise PluginError(f"{name} has no previous revision to go back to")
        target = revisions[-2]
    else:
        target = next((r for r in revisions if r.get("revision") == to_revision), None)
        if target is None:
            known = ", ".join(str(r.get("revision")) for r in revisions)
            raise PluginError(f"{name} has no revision {to_revision} (known: {known})")
    saved, fields = _saved_roles(target)
    roles = []
    for role in group["spec"]["roles"]:
        if role["name"] in saved:  # restore what shapes the pods; keep replicas and everything else
            role = _restored(role, saved[role["name"]], fields)
        roles.append(role)
    # A JSON patch guarded by the resourceVersion: an undo never overwrites a change it did not see.
    await kube.patch(
        RBG,
        namespace,
        name,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": group["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/roles", "value": roles},
        ],
        patch_type="json",
    )
    return f"rolebasedgroup.workloads.x-k8s.io/{name} rolled back to revision {target.get('revision')}"


async def status(kube: Kube, namespace: str, name: str) -> str:
    group = await _group(kube, namespace, name)
    selector = f"{naming.LABEL_GROUP_NAME}={name}"
    workloads = {}
    for kind in WORKLOADS:
        try:
            for item in await kube.list(kind, namespace, selector):
                workloads[item["metadata"]["labels"].get(naming.LABEL_ROLE)] = (kind, item)
        except Exception:  # LeaderWorkerSet may not be installed
            continue
    pods = await kube.list(PODS, namespace, selector)
    ready = conditions.find((group.get("status") or {}).get("conditions"), "Ready")
    lines = [
        f"RoleBasedGroup {namespace}/{name}: Ready={ready['status'] if ready else 'Unknown'}"
        + (f" ({ready['reason']}: {ready['message']})" if ready else "")
    ]
    roles = group["spec"]["roles"]
    for i, role in enumerate(roles):
        last = i == len(roles) - 1
        branch, stem = ("└─ ", "   ") if last else ("├─ ", "│  ")
        kind, workload = workloads.get(role["name"], (None, None))
        if workload is None:
            lines.append(f"{branch}role {role['name']}: not created yet")
            continue
        revision = workload["metadata"]["labels"].get(revision_label(role["name"]), "-")
        st = workload.get("status") or {}
        lines.append(
            f"{branch}role {role['name']}: {kind.kind} {workload['metadata']['name']} "
            f"ready {st.get('readyReplicas', 0)}/{role.get('replicas', 1)} revision {revision}"
        )
        members = sorted(
            (p for p in pods if p["metadata"]["labels"].get(naming.LABEL_ROLE) == role["name"]),
            key=lambda p: p["metadata"]["name"],
        )
        for j, pod in enumerate(members):
            pod_branch = "└─ " if j == len(members) - 1 else "├─ "
            restarts = sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses", []))
            phase = (pod.get("status") or {}).get("phase", "Unknown")
            lines.append(
                f"{stem}{pod_branch}pod {pod['metadata']['name']}: {phase}, "
                f"{'ready' if conditions.is_ready(pod) else 'not ready'}, restarts {restarts}, "
                f"node {pod['spec'].get('nodeName') or '-'}"
            )
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> str:
    kube = await Kube.connect(context=args.context, field_manager=naming.FIELD_MANAGER_KUBECTL_PLUGIN)
    namespace = args.namespace or kube.default_namespace
    try:
        if args.command == "status":
            return await status(kube, namespace, args.name)
        if args.action == "history":
            return await history(kube, namespace, args.name)
        return await undo(kube, namespace, args.name, args.to_revision)
    finally:
        await kube.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kubectl rbg", description="Work with RoleBasedGroups.")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    parser.add_argument("--context", help="kubeconfig context to use")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("status", help="roles, workloads and pods with readiness, restarts and revision")
    show.add_argument("name")
    rollout = commands.add_parser("rollout", help="revision history and rollback")
    actions = rollout.add_subparsers(dest="action", required=True)
    actions.add_parser("history", help="list the group's revisions").add_argument("name")
    back = actions.add_parser("undo", help="restore a revision's role templates (replicas stay)")
    back.add_argument("name")
    back.add_argument("--to-revision", type=int, help="revision to restore (default: the previous one)")
    args = parser.parse_args(argv)
    try:
        print(asyncio.run(_run(args)))
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
