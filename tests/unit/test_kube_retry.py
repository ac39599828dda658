import tenacity

from rbg_operator.kube import MAX_RETRY_AFTER, ApiError, _retry_after, _retryable, _wait


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


def test_retry_after_is_capped_and_nonsense_is_ignored():
    assert _retry_after("2") == 2.0 and _retry_after("-5") == 0.0 and _retry_after(None) is None
    assert _retry_after("86400") == MAX_RETRY_AFTER and _retry_after("inf") == MAX_RETRY_AFTER
    assert _retry_after("nan") is None and _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    huge = ApiError(429, {}, "PATCH", "/x", retry_after=_retry_after("1e9"))
    assert _wait(state_after(huge)) <= MAX_RETRY_AFTER
