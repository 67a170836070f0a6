"""Files are replaced as a whole or not at all (coopseg/utils/atomic_write.py)."""
import json
import os

import pytest

from coopseg.utils import atomic_write
from coopseg.utils.atomic_write import write_json_atomically, write_text_atomically


def test_writes_and_replaces_with_readable_permissions(tmp_path):
    path = str(tmp_path / "metrics.json")
    write_json_atomically(path, {"miou": 0.5})
    write_json_atomically(path, {"miou": 0.75, "note": float("inf")})
    assert json.loads(open(path).read().replace("Infinity", "1e999")) == {"miou": 0.75,
                                                                          "note": float("inf")}
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "results.md")
    write_text_atomically(path, "old table\n")

    def crash(src, dst):
        raise KeyboardInterrupt  # Ctrl-C between writing and renaming

    monkeypatch.setattr(atomic_write.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomically(path, "new table\n")
    assert open(path).read() == "old table\n"
    assert os.listdir(tmp_path) == ["results.md"]


def test_an_unserialisable_object_leaves_the_old_file(tmp_path):
    path = str(tmp_path / "stage.json")
    write_json_atomically(path, {"status": "ok"})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"status": object()})
    assert json.load(open(path)) == {"status": "ok"}
