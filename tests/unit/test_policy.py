from rbg_operator.controller.policy import policy_rules


def policy(*rules) -> dict:
    return {"metadata": {"name": "g"}, "spec": {"policies": list(rules)}}


def test_a_policy_becomes_the_coordination_rules_of_its_group():
    rules, problems = policy_rules(
        policy(
            {
                "name": "roll",
                "roles": ["prefill", "decode"],
                "strategy": {"rollingUpdate": {"maxSkew": "25%", "maxUnavailable": "10%"}},
            },
            {"name": "grow", "roles": ["prefill", "decode"], "strategy": {"scaling": {"maxSkew": "5%"}}},
        ),
        ["prefill", "decode", "router"],
    )
    assert problems == []
    assert (
        rules[0].strategy.rolling_update.max_skew == "25%" and rules[0].strategy.rolling_update.max_unavailable == "10%"
    )
    assert rules[1].strategy.scaling.max_skew == "5%" and rules[1].roles == ["prefill", "decode"]


def test_what_cannot_be_used_is_named_and_the_rest_still_applies():
    rules, problems = policy_rules(
        policy(
            {"name": "typo", "roles": ["prefil"], "strategy": {"rollingUpdate": {"maxSkew": "25%"}}},
            {"name": "count", "roles": ["decode"], "strategy": {"rollingUpdate": {"maxSkew": 2}}},
            {"name": "ok", "roles": ["decode"], "strategy": {"rollingUpdate": {"maxSkew": "50%"}}},
        ),
        ["decode"],
    )
    assert [r.name for r in rules] == ["ok"]
    assert problems[0] == "spec.policies[0].roles: no role prefil in RoleBasedGroup g"
    assert problems[1].startswith("spec.policies[1].strategy.rollingUpdate.maxSkew")
    assert policy_rules({"metadata": {"name": "g"}, "spec": {}}, [])[1][0].startswith("spec.policies")


def test_the_condition_says_whether_the_policy_is_in_force():
    from rbg_operator.controller.policy import applied_conditions

    assert applied_conditions("g", None, None) == []
    assert applied_conditions("g", [], None)[0]["status"] == "True"
    [refused] = applied_conditions("g", ["spec.policies[0].roles: no role x in RoleBasedGroup g"], None)
    assert refused["status"] == "False" and "no role x" in refused["message"]
    assert applied_conditions("g", None, [refused])[0]["reason"] == "NoPolicy"
