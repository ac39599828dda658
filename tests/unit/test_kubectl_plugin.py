"""kubectl rbg reads groups in v1alpha2 (stored: no webhook needed) and restores revisions recorded
in either version into the group's v1alpha2 roles."""

from rbg_operator import kubectl_plugin, naming

TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "example.com/app:v1"}]}}
ROLE = {
    "name": "web",
    "replicas": 3,
    "standalonePattern": {"template": {"spec": {"containers": [{"name": "main", "image": "example.com/app:v2"}]}}},
}


def test_the_plugin_reads_the_stored_version():
    assert kubectl_plugin.RBG.path("ns", "g") == "/apis/workloads.x-k8s.io/v1alpha2/namespaces/ns/rolebasedgroups/g"


def test_a_revision_recorded_in_v1alpha1_restores_into_the_v1alpha2_role():
    restored = kubectl_plugin._restored(ROLE, {"template": TEMPLATE}, naming.LEGACY_ROLE_TEMPLATE_FIELDS)
    assert restored == {"name": "web", "replicas": 3, "standalonePattern": {"template": TEMPLATE}}


def test_a_revision_recorded_in_v1alpha2_restores_its_fields_and_keeps_replicas():
    restored = kubectl_plugin._restored(
        ROLE, {"standalonePattern": {"template": TEMPLATE}}, naming.ROLE_TEMPLATE_FIELDS
    )
    assert restored == {"name": "web", "replicas": 3, "standalonePattern": {"template": TEMPLATE}}


def test_history_names_the_images_of_either_version():
    for roles, fields in (
        ({"web": {"template": TEMPLATE}}, None),
        ({"web": {"standalonePattern": {"template": TEMPLATE}}}, list(naming.ROLE_TEMPLATE_FIELDS)),
    ):
        revision = {"data": {"roles": roles, **({"templateFields": fields} if fields else {})}}
        assert kubectl_plugin._images(revision) == "web=example.com/app:v1"
