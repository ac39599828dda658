import tenacity

from rbg_operator.kube import ApiError, _retryable, _wait


def state_after(error: Exception, attempt: int = 1) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.AsyncRetrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((type(error), error, None))
    return state


def test_a_429_waits_at_least_what_retry_after_asks():
    throttled = ApiError(429, {"message": "slow down"}, "PATCH", "/x", retry_after=3.0)
    assert _retryable(throttled)
    assert all(_wait(state_after(throttled)) >= 3.0 for _ in range(20))


def test_without_retry_after_the_wait_is_a_short_jittered_backoff():
    failed = ApiError(503, {"message": "unavailable"}, "GET", "/x")
    waits = [_wait(state_after(failed)) for _ in range(50)]
    assert max(waits) <= 0.4 and len(set(waits)) > 1


def test_a_lost_create_race_is_not_retried_but_an_apply_conflict_is():
    assert not _retryable(ApiError(409, {}, "POST", "/x"))
    assert _retryable(ApiError(409, {}, "PATCH", "/x"))
