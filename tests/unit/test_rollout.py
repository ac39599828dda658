from rbg_operator.desired.rollout import RoleRollout, coordinated_allowance, resolve


def test_percentages_resolve_like_kubernetes():
    assert resolve("25%", 4) == 1 and resolve("30%", 4) == 1 and resolve("30%", 4, round_up=True) == 2
    assert resolve(3, 10) == 3 and resolve(None, 5, default=1) == 1


def simulate(replicas: dict[str, int], skew: str, order: list[str]) -> float:
    """Drive the allowance to completion, pods becoming ready in `order`; return the worst skew seen."""
    ready = {r: 0 for r in replicas}
    allowed = {r: 0 for r in replicas}
    worst = 0.0
    for _ in range(100):
        roles = [RoleRollout(r, n, ready[r], allowed[r]) for r, n in replicas.items()]
        allowed = coordinated_allowance(roles, skew, None)
        progressed = False
        for r in order:  # one pod of the first role with room becomes ready
            if ready[r] < allowed[r]:
                ready[r] += 1
                progressed = True
                break
        fractions = [ready[r] / n for r, n in replicas.items()]
        worst = max(worst, max(fractions) - min(fractions))
        if all(ready[r] == n for r, n in replicas.items()):
            return worst
        assert progressed, f"deadlock at {ready}"
    raise AssertionError("did not finish")


def test_skew_bound_holds_and_rollout_finishes():
    assert simulate({"prefill": 4, "decode": 4}, "25%", ["prefill", "decode"]) <= 0.25
    assert simulate({"prefill": 8, "decode": 2}, "50%", ["decode", "prefill"]) <= 0.5


def test_small_roles_do_not_deadlock():
    simulate({"prefill": 1, "decode": 1}, "0%", ["prefill", "decode"])
    simulate({"prefill": 2, "decode": 1}, "10%", ["decode", "prefill"])


def test_partition_floor_is_honoured():
    roles = [RoleRollout("a", 4, 3, 3), RoleRollout("b", 4, 3, 3)]
    assert coordinated_allowance(roles, "100%", "25%") == {"a": 3, "b": 3}
