"""HEI-MED reader on fixtures in its format: gzipped int32 blob maps after a 12-byte
header, ``.GND`` blob types, exudates only (a partially annotated set)."""
from __future__ import annotations

import gzip
import logging
import os

import cv2
import numpy as np
import pytest

from coopseg.config import LESION_PRIORITY, partial_label
from data_pipelines.heimed import load_heimed, read_blob_map
from data_pipelines.idrid import idrid_class_names
from data_pipelines.imageio import read_mask_example
from data_pipelines.records import DataError

CLASSES = idrid_class_names()  # background, microaneurysm, haemorrhage, hard, soft exudate
HEIGHT, WIDTH = 30, 40


def blob_ids() -> np.ndarray:
    ids = np.zeros((HEIGHT, WIDTH), np.int32)
    ids[5:10, 5:12] = 1    # an exudate
    ids[20:25, 30:36] = 2  # a blob of another type
    return ids


def write_photo(folder, image_id, ids, gnd, column_major=False, big_endian=False):
    os.makedirs(folder, exist_ok=True)
    assert cv2.imwrite(os.path.join(folder, image_id + ".jpg"),
                       np.full((HEIGHT, WIDTH, 3), 80, np.uint8))
    payload = (ids.T if column_major else ids).astype(">i4" if big_endian else "<i4")
    header = np.array([HEIGHT, WIDTH, 1], "<i4").tobytes()
    with gzip.open(os.path.join(folder, image_id + ".map.gz"), "wb") as f:
        f.write(header + payload.tobytes())
    with open(os.path.join(folder, image_id + ".GND"), "w") as f:
        f.write(gnd)


def test_exudate_blobs_become_the_exudate_mask_in_either_pixel_order(tmp_path, caplog):
    folder = os.path.join(str(tmp_path), "DMED")
    write_photo(folder, "a_row", blob_ids(), "1 Exudate\n2 Drusen\n")
    write_photo(folder, "b_column", blob_ids(), "Exudate\ndrusen\n", column_major=True,
                big_endian=True)
    write_photo(folder, "c_none", np.zeros((HEIGHT, WIDTH), np.int32), "")
    with caplog.at_level(logging.INFO, logger="absl"):
        examples = load_heimed(str(tmp_path), class_names=CLASSES)
    assert [e.image_id for e in examples] == ["a_row", "b_column", "c_none"]
    assert [e.image_labels for e in examples] == [(0, 0, 1, 0), (0, 0, 1, 0), (0, 0, 0, 0)]
    assert "drusen: 2" in caplog.text
    unmarked = partial_label((0, 0, 1, 0))
    for example in examples[:2]:
        assert example.annotated == (0, 0, 1, 0) and example.is_partial
        _, mask = read_mask_example(example, CLASSES, LESION_PRIORITY[:4])
        assert mask.shape == (HEIGHT, WIDTH)
        assert (mask[5:10, 5:12] == CLASSES.index("hard_exudate")).all()
        # The drusen blob and the rest are "background or an unannotated class".
        assert (mask == CLASSES.index("hard_exudate")).sum() == 35
        assert mask[22, 32] == unmarked and mask[0, 0] == unmarked


def test_blob_map_quirks_are_named(tmp_path, caplog):
    folder = str(tmp_path)
    write_photo(folder, "good", blob_ids(), "1 exudate\n")
    path = os.path.join(folder, "good.map.gz")
    with pytest.raises(DataError, match=r"good\.map\.gz: 4800 payload bytes.*30x30"):
        read_blob_map(path, 30, 30)
    noise = np.random.default_rng(0).integers(0, 50, (HEIGHT, WIDTH)).astype("<i4")
    with gzip.open(os.path.join(folder, "noise.map.gz"), "wb") as f:
        f.write(bytes(12) + noise.tobytes())
    with pytest.raises(DataError, match="not contiguous"):
        read_blob_map(os.path.join(folder, "noise.map.gz"), HEIGHT, WIDTH)
    with open(os.path.join(folder, "broken.map.gz"), "wb") as f:
        f.write(b"not gzip")
    with pytest.raises(DataError, match=r"broken\.map\.gz: not a readable gzip"):
        read_blob_map(os.path.join(folder, "broken.map.gz"), HEIGHT, WIDTH)
    # A photo without its .GND is skipped and counted; mixed GND forms are an error.
    assert cv2.imwrite(os.path.join(folder, "lonely.jpg"), np.zeros((4, 4, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="absl"):
        examples = load_heimed(folder, class_names=CLASSES)
    assert [e.image_id for e in examples] == ["good"]
    assert "no .map.gz and .GND file beside the photo" in caplog.text
    with open(os.path.join(folder, "good.GND"), "w") as f:
        f.write("1 exudate\nexudate\n")
    with pytest.raises(DataError, match=r"good\.GND:2: mixes"):
        load_heimed(folder, class_names=CLASSES)
