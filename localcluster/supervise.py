"""Keep one control-plane component running, as the kubelet keeps a static pod running.

On a real control plane a component that crashes (kube-scheduler 1.35's alpha gang
scheduling can panic, for one) is restarted by the kubelet within seconds. The local cluster
runs its components under this supervisor so it behaves the same way. Each restart is logged
on a line starting with RESTART_MARK in the component's own log, where the crash is, so a test
run can report it. A component that keeps dying right after it starts is broken, not unlucky:
the supervisor then gives up, so `up` fails fast and says which log to read.

Usage: python -m localcluster.supervise NAME -- COMMAND [ARGS...]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

RESTART_MARK = "localcluster-supervisor:"
QUICK_EXIT_SECONDS = 10  # an exit this soon after starting counts as a failure to start
GIVE_UP_AFTER = 3  # consecutive failures to start
MAX_DELAY_SECONDS = 16


def supervise(name: str, command: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        if child and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    quick_exits, delay, restarts = 0, 1, 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        code = child.wait()
        if stopping:
            return code
        ran = time.monotonic() - started
        quick_exits = quick_exits + 1 if ran < QUICK_EXIT_SECONDS else 0
        if quick_exits >= GIVE_UP_AFTER:
            _say(
                f"{name} exited with code {code} {quick_exits} times within {QUICK_EXIT_SECONDS}s of starting; "
                f"giving up"
            )
            return code or 1
        # Back off while it keeps crashing; a long healthy run starts the backoff over.
        delay = 1 if restarts == 0 or ran >= 5 * 60 else min(delay * 2, MAX_DELAY_SECONDS)
        restarts += 1
        _say(f"{name} exited with code {code} after {ran:.0f}s; restart {restarts} in {delay}s")
        time.sleep(delay)
        if stopping:
            return code


def _say(message: str) -> None:
    print(f"{RESTART_MARK} {message}", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m localcluster.supervise NAME -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return supervise(argv[0], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
