"""The run-directory lock: one writer per --model_dir, stale locks taken over, no waiting.

The end-to-end case (two real ``coopseg-train`` processes, a SIGKILL) is in
``test_cli_processes.py``; these tests cover the lock's own cases in seconds.
"""
import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from coopseg.runs import lock as run_lock
from coopseg.runs.lock import LOCK_NAME, RunDirectoryLocked, describe_holder, run_directory_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(model_dir) -> dict:
    with open(os.path.join(model_dir, LOCK_NAME)) as f:
        text = f.read().strip()
    return json.loads(text) if text else {}


def _hold_in_subprocess(model_dir: str) -> subprocess.Popen:
    """A process that takes the lock, says so on stdout, and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from coopseg.runs.lock import run_directory_lock
        with run_directory_lock({model_dir!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_records_the_holder_and_is_released(tmp_path):
    model_dir = str(tmp_path / "run")
    with run_directory_lock(model_dir):
        record = _record(model_dir)
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["started"] and "command" in record
        # Locked once: a second acquisition in this process is a bug, refused clearly,
        # and does not release the outer lock.
        with pytest.raises(RunDirectoryLocked, match="already locked by this process"):
            with run_directory_lock(model_dir):
                pass
        assert _record(model_dir)["pid"] == os.getpid()  # still held by the outer block
    assert _record(model_dir) == {}  # emptied, not deleted (see the module docstring)
    with run_directory_lock(model_dir):  # and free again
        pass


def test_a_live_holder_in_another_process_is_refused_at_once(tmp_path):
    model_dir = str(tmp_path / "run")
    holder = _hold_in_subprocess(model_dir)
    try:
        t0 = time.perf_counter()
        with pytest.raises(RunDirectoryLocked) as err:
            with run_directory_lock(model_dir):
                pass
        assert time.perf_counter() - t0 < 2.0  # never waits for the holder
        message = str(err.value)
        assert model_dir in message and f"pid {holder.pid} on {socket.gethostname()}" in message
        assert "\n" not in message
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: taken over, with a warning.
    with run_directory_lock(model_dir):
        assert _record(model_dir)["pid"] == os.getpid()


def test_a_killed_holders_record_is_taken_over_with_a_warning(tmp_path, caplog):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / LOCK_NAME).write_text(json.dumps(
        {"pid": 999999, "host": socket.gethostname(), "started": "2026-01-01 00:00:00",
         "command": "coopseg-train --model_dir=x"}))
    with run_directory_lock(str(model_dir)):
        assert _record(str(model_dir))["pid"] == os.getpid()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("taking over the lock left by pid 999999" in w for w in warnings), warnings


@pytest.fixture
def no_flock(monkeypatch):
    """A filesystem without flock (some network mounts)."""
    def flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(run_lock.fcntl, "flock", flock)


def _write_record(model_dir, **record):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, LOCK_NAME), "w") as f:
        json.dump(record, f)


def test_without_flock_a_live_pid_refuses_and_a_dead_one_is_taken_over(tmp_path, no_flock):
    model_dir = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_record(model_dir, pid=holder.pid, host=socket.gethostname())
        with pytest.raises(RunDirectoryLocked, match=f"pid {holder.pid}"):
            with run_directory_lock(model_dir):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_directory_lock(model_dir):  # the pid is gone now
        assert _record(model_dir)["pid"] == os.getpid()


def test_without_flock_another_hosts_record_names_the_file_to_delete(tmp_path, no_flock):
    model_dir = str(tmp_path / "run")
    _write_record(model_dir, pid=1, host="some-other-host")
    with pytest.raises(RunDirectoryLocked,
                       match=f"pid 1 on some-other-host.*delete {os.path.join(model_dir, LOCK_NAME)}"):
        with run_directory_lock(model_dir):
            pass


def test_describe_holder_of_odd_records():
    assert describe_holder(None) == "an unknown process"
    assert "garbage" in describe_holder({"unreadable": "garbage"})
    assert describe_holder({"pid": 7, "host": "h", "started": "t", "command": "c"}) == \
        "pid 7 on h, since t: c"
