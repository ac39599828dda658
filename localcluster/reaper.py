"""The fake kubelet's last step, done safely: remove terminating pods from the fake nodes.

A kubelet finishes a pod's deletion once its containers have stopped. kwok (v0.8.0) can do this
too, but it deletes by name, and under load it sometimes acts on delete work it still holds for
a pod that is already gone: it then deletes the StatefulSet's re-created pod of the same name,
which the StatefulSet re-creates again, over and over. This reaper deletes with a UID
precondition instead, so it can only ever remove the pod it saw terminating.

Usage: python reaper.py --server URL --ca CA --cert CERT --key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys

import aiohttp

PODS = "/api/v1/pods"
ON_A_NODE = "spec.nodeName!="  # unbound pods are deleted by the API server itself


class Reaper:
    def __init__(self, session: aiohttp.ClientSession, server: str):
        self.session, self.server = session, server
        self.in_flight: set[str] = set()

    async def run(self) -> None:
        while True:
            try:
                version = await self._list()
                await self._watch(version)
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                print(f"pod-reaper: {type(error).__name__}: {error}; listing again in 1s", flush=True)
                await asyncio.sleep(1)

    async def _list(self) -> str:
        async with self.session.get(self.server + PODS, params={"fieldSelector": ON_A_NODE}) as response:
            response.raise_for_status()
            body = await response.json()
        for pod in body["items"]:
            self._consider(pod)
        return body["metadata"]["resourceVersion"]

    async def _watch(self, version: str) -> None:
        params = {
            "watch": "1",
            "fieldSelector": ON_A_NODE,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        async with self.session.get(
            self.server + PODS, params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=330)
        ) as response:
            response.raise_for_status()
            async for line in response.content:
                event = json.loads(line)
                if event["type"] == "ERROR":
                    return  # usually 410 Gone: the version is too old; list again
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._consider(event["object"])

    def _consider(self, pod: dict) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and meta["uid"] not in self.in_flight:
            self.in_flight.add(meta["uid"])
            asyncio.create_task(self._delete(meta["namespace"], meta["name"], meta["uid"]))

    async def _delete(self, namespace: str, name: str, uid: str) -> None:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        url = f"{self.server}/api/v1/namespaces/{namespace}/pods/{name}"
        try:
            for attempt in range(5):
                async with self.session.delete(url, json=body) as response:
                    # 404: already gone; 409: the name now belongs to a newer pod, which is not ours to remove.
                    if response.status < 300 or response.status in (404, 409):
                        return
                    print(f"pod-reaper: deleting {namespace}/{name} answered {response.status}; retrying", flush=True)
                await asyncio.sleep(0.5 * 2**attempt)
        except aiohttp.ClientError as error:
            print(f"pod-reaper: deleting {namespace}/{name} failed: {error}", flush=True)
        finally:
            self.in_flight.discard(uid)


async def main(args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)
    connector = aiohttp.TCPConnector(ssl=context, limit=20)
    async with aiohttp.ClientSession(connector=connector) as session:
        await Reaper(session, args.server.rstrip("/")).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--server", "--ca", "--cert", "--key"):
        parser.add_argument(flag, required=True)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
