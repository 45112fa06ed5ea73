import time
import uuid
from pathlib import Path

import pytest

from ctxsparse.agent.sandbox import (
    NAMESPACES,
    NETWORK,
    RLIMITS,
    Limits,
    available_isolation,
    process_limit_mode,
    run_command,
)

ISOLATED = available_isolation() == NAMESPACES
# The levels with a network namespace that this machine allows (the stronger one implies the weaker).
NETNS_LEVELS = {NAMESPACES: [NAMESPACES, NETWORK], NETWORK: [NETWORK], RLIMITS: []}[available_isolation()]
needs_netns = pytest.mark.skipif(not NETNS_LEVELS, reason="user/network namespaces are not available here")
needs_namespaces = pytest.mark.skipif(not ISOLATED, reason="user/network/PID/mount namespaces are not available here")
FAST = Limits(wall_s=5, cpu_s=5, memory_bytes=1 << 30, file_bytes=1 << 20, processes=32, output_bytes=2000)


def _read(path):
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    r.mkdir()
    (r / "main.py").write_text("print('hi')\n")
    return r


def test_runs_in_the_copy_and_python_works(repo):
    result = run_command("cat main.py && python main.py && echo new > made.txt", repo, FAST)
    assert result.returncode == 0 and "hi" in result.output
    assert (repo / "made.txt").read_text() == "new\n"
    assert result.isolation in (NAMESPACES, NETWORK, RLIMITS)


@needs_namespaces
def test_write_outside_the_copy_is_refused(repo, tmp_path):
    outside = tmp_path / "outside.txt"
    cmd = f"echo x > {outside}; mkdir -p {tmp_path}/escape && echo y > {tmp_path}/escape/f; echo z > /etc/ctxs-x"
    cmd += "; echo done"
    result = run_command(cmd, repo, FAST)
    assert "done" in result.output
    assert not outside.exists() and not (tmp_path / "escape").exists()
    assert "Read-only file system" in result.output or "No such file" in result.output


@needs_namespaces
def test_cannot_remount_or_keep_capabilities(repo):
    result = run_command("mount -o remount,rw / ; grep CapEff /proc/self/status", repo, FAST)
    assert "CapEff:\t0000000000000000" in result.output


@needs_netns
@pytest.mark.parametrize("level", NETNS_LEVELS or [NETWORK])
def test_no_network(repo, level):
    cmd = "python -c \"import socket; socket.create_connection(('1.1.1.1', 53), timeout=2); print('connected')\""
    result = run_command(cmd, repo, FAST, isolation=level)
    assert result.returncode != 0 and "connected" not in result.output
    assert "unreachable" in result.output.lower()


# A fork bomb only runs where something bounds it (a pids cgroup, or RLIMIT_NPROC for a non-root user).
@pytest.mark.skipif(process_limit_mode() == "none", reason="running as root without a writable pids cgroup")
@pytest.mark.parametrize("level", [*NETNS_LEVELS, RLIMITS])
def test_fork_bomb_is_contained(repo, level):
    marker = f"after-{uuid.uuid4().hex}"
    bomb = Limits(wall_s=2, cpu_s=5, processes=16)
    result = run_command(f":(){{ :|:& }};: ; sleep 1; echo {marker}", repo, bomb, isolation=level)
    assert result.limits_hit
    # Nothing of the bomb is left running on the host (every copy carries the marker in its command line).
    time.sleep(0.3)
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker.encode() in _read(p)]


@pytest.mark.parametrize("isolation", [None, RLIMITS])
def test_endless_loop_stops_at_the_wall_clock(repo, isolation):
    result = run_command("while true; do :; done", repo, Limits(wall_s=1, cpu_s=30), isolation=isolation)
    assert "wall_time" in result.limits_hit and result.wall_s < 5


def test_cpu_time_limit(repo):
    result = run_command("python -c 'while True: pass'", repo, Limits(wall_s=10, cpu_s=1))
    assert "cpu_time" in result.limits_hit and result.wall_s < 8


def test_huge_output_is_capped_and_truncated(repo):
    result = run_command("yes", repo, Limits(wall_s=10, output_bytes=1000, output_cap_bytes=1 << 20))
    assert "output_cap" in result.limits_hit and "output_truncated" in result.limits_hit
    assert len(result.output) < 1300 and "elided" in result.output


def test_file_size_and_memory_limits(repo):
    big = run_command("head -c 3000000 /dev/zero > big.bin; echo next", repo, FAST)
    assert (repo / "big.bin").stat().st_size <= FAST.file_bytes
    assert "next" in big.output
    mem = run_command("python -c 'x = bytearray(3 << 30)'", repo, FAST)
    assert mem.returncode != 0 and "MemoryError" in mem.output


def test_scrubbed_environment(repo, monkeypatch):
    monkeypatch.setenv("CTXSPARSE_TEST_SECRET", "hunter2")
    result = run_command("env", repo, FAST)
    assert "hunter2" not in result.output and "PATH=" in result.output


def test_bad_limits_and_isolation(repo):
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)
    with pytest.raises(ValueError, match="isolation"):
        run_command("true", repo, FAST, isolation="vm")
