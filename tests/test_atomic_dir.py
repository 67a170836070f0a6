"""A directory written as a whole: the earlier one survives a failed swap."""
import json
import os

import pytest

from data_pipelines import atomic_dir


def _write(content):
    def write(tmp):
        (tmp / "data.txt").write_text(content)
        return {"content": content}
    return write


def test_replaces_an_earlier_directory_whole(tmp_path):
    out = tmp_path / "out"
    atomic_dir.write_directory_atomically(out, "manifest.json", _write("first"))
    atomic_dir.write_directory_atomically(out, "manifest.json", _write("second"))
    assert (out / "data.txt").read_text() == "second"
    assert json.loads((out / "manifest.json").read_text()) == {"content": "second"}
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary or old copies left


def test_a_failed_swap_puts_the_earlier_directory_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    atomic_dir.write_directory_atomically(out, "manifest.json", _write("first"))
    real_replace, calls = os.replace, []

    def replace_failing_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new directory into place
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_dir.os, "replace", replace_failing_second)
    with pytest.raises(OSError, match="disk full"):
        atomic_dir.write_directory_atomically(out, "manifest.json", _write("second"))
    monkeypatch.undo()
    assert (out / "data.txt").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_refuses_a_directory_it_did_not_write_and_nan(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="refusing to overwrite"):
        atomic_dir.write_directory_atomically(foreign, "manifest.json", _write("x"))
    with pytest.raises(ValueError):
        atomic_dir.write_directory_atomically(tmp_path / "n", "manifest.json",
                                              lambda tmp: {"value": float("nan")})
    assert not (tmp_path / "n").exists()
