"""One writer per run directory: an exclusive lock held while a run writes into it.

Two ``coopseg-train`` processes on one ``--model_dir`` would interleave checkpoints and
overwrite each other's metrics and export. ``run_directory_lock`` holds ``.lock`` in it; a
second process fails at once (``RunDirectoryLocked``). Nothing here ever waits, and the
file is emptied, never deleted, on release. User-facing: docs/run_directories.md.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Iterator, Optional, Set

from absl import logging

from coopseg.config import ConfigError

LOCK_NAME = ".lock"
# Lock files this process holds. A run directory is locked once, by ``train()``; a second
# acquisition in the same process is a bug, refused with its own message (flock locks
# belong to an open file, so a second open + flock would refuse too, less clearly).
_held: Set[str] = set()


class RunDirectoryLocked(ConfigError):
    """Another live process is writing into the run directory."""


def _read_record(fd: int) -> Optional[dict]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {"unreadable": text[:80]}
    return record if isinstance(record, dict) else {"unreadable": text[:80]}


def _write_record(fd: int, record: Optional[dict]) -> None:
    os.ftruncate(fd, 0)
    if record is not None:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        os.fsync(fd)


def describe_holder(record: Optional[dict]) -> str:
    """``pid 123 on host, since <time>: <command>`` for a lock record."""
    if not record:
        return "an unknown process"
    if "unreadable" in record:
        return f"an unknown process (lock file reads {record['unreadable']!r})"
    text = f"pid {record.get('pid')} on {record.get('host')}"
    if record.get("started"):
        text += f", since {record['started']}"
    if record.get("command"):
        text += f": {record['command']}"
    return text


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _check_record_only(path: str, model_dir: str, previous: Optional[dict]) -> None:
    """The no-flock fallback: refuse unless the recorded holder is provably gone.

    Filesystems without ``flock`` (some network mounts) have the record alone: a record
    of a live process on this host refuses; a record of a process on another host
    refuses too (we cannot see whether it runs), naming the file to delete if it does not.
    """
    if not previous or "unreadable" in previous or previous.get("pid") == os.getpid():
        return
    if previous.get("host") != socket.gethostname():
        raise RunDirectoryLocked(
            f"{model_dir} is in use by {describe_holder(previous)} (this filesystem has no "
            f"file locks, so it cannot be checked from here); if that run is gone, delete {path}")
    if _pid_alive(int(previous.get("pid", -1))):
        raise RunDirectoryLocked(f"{model_dir} is in use by {describe_holder(previous)}; "
                                 "wait for it to finish, stop it, or choose another --model_dir")


def _remove_if_only_lock(model_dir: str, path: str) -> None:
    """Remove a run directory this process created when a failed start left nothing in
    it but the lock file: a start that fails leaves no empty run behind."""
    try:
        if os.listdir(model_dir) == [LOCK_NAME]:
            os.unlink(path)
            os.rmdir(model_dir)
    except OSError as err:
        logging.warning("%s: could not remove the empty run directory: %s", model_dir, err)


@contextlib.contextmanager
def run_directory_lock(model_dir: str) -> Iterator[None]:
    """Hold ``model_dir``'s lock for the block; RunDirectoryLocked if another live
    process holds it, or this process already does (a run directory is locked once).

    The lock is ``flock`` on ``<model_dir>/.lock`` (the kernel releases it when the
    process dies, however it dies), and the holder writes its pid, host, start time and
    command into the file. A file still holding a record while nobody holds the kernel
    lock was left by a run that was killed: it is taken over with a warning.
    """
    created = not os.path.isdir(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(os.path.realpath(model_dir), LOCK_NAME)
    if path in _held:
        raise RunDirectoryLocked(f"{model_dir} is already locked by this process: a run "
                                 "directory has one writer, and it is locked once")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            kernel_lock = True
        except BlockingIOError:
            raise RunDirectoryLocked(
                f"{model_dir} is in use by {describe_holder(_read_record(fd))}; wait for it to "
                "finish, stop it, or choose another --model_dir") from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            kernel_lock = False
        previous = _read_record(fd)
        if not kernel_lock:
            _check_record_only(path, model_dir, previous)
        elif previous:
            logging.warning("%s: taking over the lock left by %s, which is no longer running",
                            model_dir, describe_holder(previous))
        _write_record(fd, {"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])})
        _held.add(path)
        failed = True
        try:
            yield
            failed = False
        finally:
            _held.discard(path)
            if failed and created:
                _remove_if_only_lock(model_dir, path)
            # Emptied, never deleted: deleting it would let a process that opened the old
            # file and one that creates a new one both "hold" the lock.
            _write_record(fd, None)
            if kernel_lock:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
