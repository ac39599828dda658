import asyncio
import logging

from rbg_operator import kinds
from rbg_operator.controller.reflector import Reflector
from rbg_operator.controller.store import Store
from rbg_operator.kube import KINDS


class DiesOnce(Reflector):
    """A reflector whose first run ends in an error nobody foresaw (as a TypeError from the store did)."""

    runs = 0

    async def run(self) -> None:
        self.runs += 1
        if self.runs == 1:
            raise TypeError("Recursion limit reached")
        self.behind_since = None
        await asyncio.sleep(3600)


async def test_a_reflector_that_dies_is_logged_and_started_again(caplog):
    reflector = DiesOnce(None, Store(), KINDS[(kinds.API_VERSION, "RoleBasedGroup")], lambda *_: None)
    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(reflector.run_supervised(restart_delay=0.01))
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert reflector.runs == 2 and reflector.behind_since is None
    assert any("died; starting it again" in r.getMessage() and r.exc_info for r in caplog.records)
