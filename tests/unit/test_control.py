"""Who may write an object (control.py): the check made before every write, and the lock that
keeps two owners from both creating one name."""

import asyncio

from rbg_operator import naming
from rbg_operator.controller.control import NameLocks, conflict, controlled_by, controller_of
from tests.support.owned import child, owner, ref

GROUP_A = owner("RoleBasedGroup", "a", "uid-a")
GROUP_AB = owner("RoleBasedGroup", "a-b", "uid-ab")


def test_only_the_controller_uid_counts():
    mine = child("s-a-b-c", ref("RoleBasedGroup", "a", "uid-a"))
    assert controlled_by(mine, "uid-a") and not controlled_by(mine, "uid-ab")
    # A non-controller reference, or a name alone, proves nothing.
    assert not controlled_by(child("x", ref("RoleBasedGroup", "a", "uid-a", controller=False)), "uid-a")
    assert not controlled_by(child("x", ref("RoleBasedGroup", "a", "")), "")
    assert controller_of(child("x")) is None


def test_a_name_taken_by_another_owner_or_by_nobody_is_a_conflict():
    service = child("s-a-b-c", ref("RoleBasedGroup", "a", "uid-a"))
    assert conflict(None, GROUP_AB) is None  # absent: free to create
    assert conflict(service, GROUP_A) is None  # the first owner keeps it
    held = conflict(service, GROUP_AB)  # the second reports it and writes nothing
    assert held == (
        "Service s-a-b-c already exists and is controlled by RoleBasedGroup a; "
        "RoleBasedGroup a-b leaves it alone: delete or rename it"
    )
    bare = conflict(child("p-0-main-0", kind="Pod"), owner("RoleInstance", "p-0", "uid-p"))
    assert "Pod p-0-main-0 already exists and has no controller" in bare
    # Labels claiming the group change nothing.
    forged = child("s-a-b-c", labels={naming.LABEL_GROUP_NAME: "a-b"})
    assert conflict(forged, GROUP_AB) is not None


def test_one_owner_at_a_time_looks_for_a_name_and_creates_it():
    locks, order = NameLocks(), []

    async def create(who: str, key) -> None:
        async with locks.hold(key):
            order.append(f"{who} looks")
            await asyncio.sleep(0.01)
            order.append(f"{who} creates")

    async def main() -> None:
        await asyncio.gather(
            create("a", ("Service", "s-a-b-c")),
            create("a-b", ("Service", "s-a-b-c")),
            create("other", ("Service", "s-x")),
        )

    asyncio.run(main())
    a, ab = order.index("a looks"), order.index("a-b looks")
    first, second = ("a", "a-b") if a < ab else ("a-b", "a")
    assert order.index(f"{first} creates") < order.index(f"{second} looks")
    assert order.index("other looks") < order.index(f"{second} looks")  # other names do not wait
    assert len(locks) == 0  # nothing is kept once the creations are done


def test_an_instance_set_says_failed_create_only_while_a_name_is_held():
    from rbg_operator.controller.instanceset_plan import conflict_conditions

    assert conflict_conditions([], None) == []  # a set that never had one gets no condition
    held = conflict_conditions(["RoleInstance q-0 already exists and has no controller; ..."], None)
    assert [(c["type"], c["status"], c["reason"]) for c in held] == [("FailedCreate", "True", "ChildConflict")]
    cleared = conflict_conditions([], held)
    assert [(c["type"], c["status"]) for c in cleared] == [("FailedCreate", "False")]
