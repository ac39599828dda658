import asyncio

import pytest

from rbg_operator.controller.together import together


async def test_results_in_order():
    async def value(v, delay):
        await asyncio.sleep(delay)
        return v

    assert await together(value(1, 0.02), value(2, 0)) == [1, 2]


async def test_the_first_failure_cancels_the_siblings_and_is_raised_unwrapped():
    cancelled = []

    async def slow_write():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    async def failing_write():
        await asyncio.sleep(0.01)
        raise LookupError("422 from the API server")

    started = asyncio.get_running_loop().time()
    with pytest.raises(LookupError, match="422"):
        await together(slow_write(), failing_write())
    assert asyncio.get_running_loop().time() - started < 1
    assert cancelled == ["slow"]  # no write of the failed reconcile is still running
