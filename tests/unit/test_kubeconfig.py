import pytest
import yaml

from rbg_operator import kubeconfig


def write(path, contexts, current=None, clusters=(), users=()):
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": current,
                "contexts": [{"name": n, "context": c} for n, c in contexts],
                "clusters": [{"name": n, "cluster": c} for n, c in clusters],
                "users": [{"name": n, "user": u} for n, u in users],
            }
        )
    )
    return path


def test_current_context_with_relative_files_resolved_against_its_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    (tmp_path / "certs").mkdir()
    config = write(
        tmp_path / "config",
        [("dev", {"cluster": "c", "user": "u", "namespace": "team"})],
        current="dev",
        clusters=[("c", {"server": "https://dev:6443", "certificate-authority": "certs/ca.crt"})],
        users=[("u", {"client-certificate": "certs/u.crt", "client-key": "certs/u.key"})],
    )
    creds = kubeconfig.load(kubeconfig=str(config))
    assert creds.server == "https://dev:6443"
    assert creds.namespace == "team"
    assert creds.info.ca_path == str(tmp_path / "certs" / "ca.crt")
    assert creds.info.certificate_path == str(tmp_path / "certs" / "u.crt")


async def test_named_context_wins_and_first_file_defines_each_name(tmp_path, monkeypatch):
    first = write(
        tmp_path / "a",
        [("prod", {"cluster": "p", "user": "t"})],
        current="prod",
        clusters=[("p", {"server": "https://prod"})],
        users=[("t", {"token": "first"})],
    )
    second = write(
        tmp_path / "b",
        [("stage", {"cluster": "s", "user": "t"})],
        clusters=[("s", {"server": "http://stage:8080"})],
        users=[("t", {"token": "second"})],
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    creds = kubeconfig.load(context="stage")
    assert creds.server == "http://stage:8080"
    assert creds.namespace == "default"
    assert await creds.headers() == {"Authorization": "Bearer first"}
    assert creds.ssl_context() is False  # plain HTTP


def test_unknown_context_is_named_in_the_error(tmp_path):
    config = write(
        tmp_path / "config",
        [("dev", {"cluster": "c", "user": "u"})],
        current="dev",
        clusters=[("c", {"server": "https://dev"})],
    )
    with pytest.raises(kubeconfig.ConfigError, match="'nope' not found"):
        kubeconfig.load(context="nope", kubeconfig=str(config))


async def test_exec_plugin_token_is_used_and_cached(tmp_path):
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        '#!/bin/sh\necho run >> "$0.calls"\necho \'{"kind":"ExecCredential","status":{"token":"from-plugin"}}\'\n'
    )
    plugin.chmod(0o755)
    config = write(
        tmp_path / "config",
        [("dev", {"cluster": "c", "user": "u"})],
        current="dev",
        clusters=[("c", {"server": "https://dev"})],
        users=[("u", {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}})],
    )
    creds = kubeconfig.load(kubeconfig=str(config))
    assert await creds.headers() == {"Authorization": "Bearer from-plugin"}
    assert await creds.headers() == {"Authorization": "Bearer from-plugin"}
    assert (tmp_path / "plugin.sh.calls").read_text().count("run") == 1
    assert creds.as_connection_info().token == "from-plugin"


async def test_concurrent_callers_share_one_plugin_run_and_a_hung_plugin_times_out(tmp_path, monkeypatch):
    import asyncio

    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        '#!/bin/sh\necho run >> "$0.calls"\nsleep "${DELAY:-0}"\n'
        'echo \'{"kind":"ExecCredential","status":{"token":"t"}}\'\n'
    )
    plugin.chmod(0o755)
    config = write(
        tmp_path / "config",
        [("dev", {"cluster": "c", "user": "u"})],
        current="dev",
        clusters=[("c", {"server": "https://dev"})],
        users=[("u", {"exec": {"command": str(plugin), "env": [{"name": "DELAY", "value": "0.2"}]}})],
    )
    creds = kubeconfig.load(kubeconfig=str(config))
    assert await asyncio.gather(*(creds.headers() for _ in range(5))) == [{"Authorization": "Bearer t"}] * 5
    assert (tmp_path / "plugin.sh.calls").read_text().count("run") == 1
    monkeypatch.setattr(kubeconfig, "EXEC_PLUGIN_TIMEOUT", 0.1)
    hung = kubeconfig.load(kubeconfig=str(config))
    with pytest.raises(kubeconfig.ConfigError, match="no token within 0.1s"):
        await hung.headers()
