import signal

import pytest

from ctxsparse.agent.sandbox_limits import Limits, PidsCgroup, process_limit_mode, signal_limits


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="processes must be > 0"):
        Limits(processes=0)
    with pytest.raises(ValueError, match="wall_s must be > 0"):
        Limits(wall_s=-1)


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (-signal.SIGXCPU, ["cpu_time"]),
        (128 + signal.SIGXCPU, ["cpu_time"]),
        (-signal.SIGXFSZ, ["file_size"]),
        (128 + signal.SIGXFSZ, ["file_size"]),
        (-signal.SIGKILL, []),
        (0, []),
        (1, []),
    ],
)
def test_signal_limits_names_the_limit_that_killed(returncode, expected):
    assert signal_limits(returncode) == expected


def test_pids_cgroup_holds_the_limit_and_is_removed():
    cgroup = PidsCgroup(7)
    if process_limit_mode() != "cgroup":
        assert cgroup.path is None
        assert not cgroup.limited()
        return
    assert (cgroup.path / "pids.max").read_text().strip() == "7"
    assert not cgroup.limited()
    cgroup.close()
    assert not cgroup.path.exists()
