import pytest

from ctxsparse.agent.sandbox_isolation import NAMESPACES, NETWORK, RLIMITS, command_argv_and_env, scrubbed_env
from ctxsparse.agent.sandbox_limits import Limits


def test_scrubbed_env_drops_the_callers_variables(monkeypatch):
    monkeypatch.setenv("CTXSPARSE_TEST_SECRET", "hunter2")
    env = scrubbed_env("/scratch", {"EXTRA": "1"})
    assert "CTXSPARSE_TEST_SECRET" not in env
    assert env["HOME"] == env["TMPDIR"] == "/scratch"
    assert env["EXTRA"] == "1"


@pytest.mark.parametrize("level", [NETWORK, RLIMITS])
def test_plain_levels_run_bash_in_the_repository(tmp_path, level):
    repo = tmp_path / "repo"
    repo.mkdir()
    argv, env, cwd = command_argv_and_env("echo hi", repo, tmp_path, Limits(), level, None)
    assert argv[-3:] == ["/bin/bash", "-c", "echo hi"]
    assert (argv[0] == "unshare") == (level == NETWORK)
    assert cwd == str(repo)
    assert env["HOME"] == str(tmp_path / "home")


def test_namespace_level_builds_a_private_root(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    argv, env, cwd = command_argv_and_env("echo hi", repo, tmp_path, Limits(tmp_bytes=1234), NAMESPACES, None)
    assert argv[0] == "unshare" and "--mount" in argv
    assert cwd is None
    assert env["CTXS_COMMAND"] == "echo hi"
    assert env["CTXS_REPO"] == str(repo)
    assert env["CTXS_TMP_BYTES"] == "1234"
    assert "/usr" in env["CTXS_RO_DIRS"].split()
    assert (tmp_path / "root").is_dir()
