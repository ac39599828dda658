from rbg_operator.controller.diff import contains


def test_server_defaults_do_not_count_as_a_difference():
    want = {"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}
    have = {
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 10,
            "template": {
                "spec": {
                    "containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}],
                    "dnsPolicy": "ClusterFirst",
                }
            },
        }
    }
    assert contains(have, want)


def test_changed_value_missing_field_and_extra_list_item_are_differences():
    base = {"spec": {"replicas": 2, "list": [{"a": 1}]}}
    assert not contains({"spec": {"replicas": 3, "list": [{"a": 1}]}}, base)
    assert not contains({"spec": {"list": [{"a": 1}]}}, base)
    assert not contains({"spec": {"replicas": 2, "list": [{"a": 1}, {"a": 2}]}}, base)


def test_quantities_compare_by_value():
    assert contains({"memory": "1073741824", "cpu": "500m"}, {"memory": "1Gi", "cpu": "0.5"})
    assert not contains({"memory": "1G"}, {"memory": "1Gi"})
    assert contains({"gpu": "2"}, {"gpu": 2})


def test_booleans_are_not_quantities():
    assert not contains({"paused": 1}, {"paused": True})


def test_zero_values_match_fields_the_server_omits():
    assert contains({"spec": {}}, {"spec": {"minReadySeconds": 0, "paused": False, "args": []}})
    assert not contains({"spec": {}}, {"spec": {"minReadySeconds": 5}})


def test_hashes_that_read_as_huge_numbers_compare_as_text():
    # Revision hashes are hex: "81e9460123" reads as 81 x 10^9460123, too large for a Decimal
    # product. Comparing two of them must say "different", not fail the reconcile.
    assert not contains({"labels": {"rev": "81e9460123"}}, {"labels": {"rev": "2e99999999"}})
    assert contains({"labels": {"rev": "81e9460123"}}, {"labels": {"rev": "81e9460123"}})
