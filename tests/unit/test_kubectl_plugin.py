"""kubectl rbg reads groups in v1alpha2 (stored: no webhook needed) and undoes a revision through
the version its role fields are in."""

from rbg_operator import kubectl_plugin


def test_the_plugin_reads_the_stored_version():
    assert kubectl_plugin.RBG.path("ns", "g") == "/apis/workloads.x-k8s.io/v1alpha2/namespaces/ns/rolebasedgroups/g"


def test_revisions_without_a_version_hold_v1alpha1_fields():
    assert kubectl_plugin.revision_api_version({"data": {"roles": {"web": {"template": {}}}}}) == \
        "workloads.x-k8s.io/v1alpha1"
    assert kubectl_plugin.revision_api_version({"data": {"apiVersion": "workloads.x-k8s.io/v1alpha2"}}) == \
        "workloads.x-k8s.io/v1alpha2"
