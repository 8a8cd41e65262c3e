"""The test suite's own guard: a command that leaves processes behind fails, and they are killed."""

import sys
import time

import psutil
import pytest

from conftest import free_port, run_process


def test_a_command_that_leaves_a_child_running_fails_and_the_child_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    with pytest.raises(AssertionError, match="left 1 process"):
        run_process([sys.executable, "-c", _start_sleeper(pid_file)], timeout=60)
    time.sleep(0.5)
    assert not _alive(int(pid_file.read_text()))


def test_a_timeout_kills_the_whole_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    with pytest.raises(Exception, match="timed out"):
        run_process([sys.executable, "-c", _start_sleeper(pid_file) + "; time.sleep(600)"], timeout=5)
    time.sleep(0.5)
    assert not _alive(int(pid_file.read_text()))


def test_free_ports_differ_and_are_unused():
    a, b = free_port(), free_port()
    assert 1024 < a < 65536 and 1024 < b < 65536
    assert not any(c.laddr and c.laddr.port == a and c.status == "LISTEN" for c in psutil.net_connections("tcp"))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_sleeper(pid_file) -> str:
    """Python code that starts a child sleeping 10 minutes and writes its pid."""
    return ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))")
