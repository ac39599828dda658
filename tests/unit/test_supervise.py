"""The local cluster's supervisor: restarts a component that dies, gives up on one that cannot start."""

import subprocess
import sys

from localcluster import supervise


def test_a_component_that_cannot_start_is_given_up_after_three_tries(tmp_path):
    counter = tmp_path / "starts"
    script = f"echo x >> {counter}; exit 3"
    result = subprocess.run(
        [sys.executable, supervise.__file__, "broken", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert counter.read_text().count("x") == supervise.GIVE_UP_AFTER
    lines = [line for line in result.stdout.splitlines() if line.startswith(supervise.RESTART_MARK)]
    assert lines[0] == f"{supervise.RESTART_MARK} broken exited with code 3 after 0s; restart 1 in 1s"
    assert lines[-1].endswith("giving up")


def test_usage_error_names_the_expected_arguments():
    result = subprocess.run([sys.executable, supervise.__file__, "only-a-name"], capture_output=True, text=True)
    assert result.returncode == 2 and "NAME -- COMMAND" in result.stderr
