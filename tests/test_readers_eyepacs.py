"""EyePACS reader: Kaggle layouts, usage filter, and every hard-input case of the policy."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from coopseg.config import ConfigError
from data_pipelines.eyepacs import eyepacs_patient_id, load_eyepacs
from data_pipelines.records import DataError

JPEG = cv2.imencode(".jpg", np.full((4, 4, 3), 90, np.uint8))[1].tobytes()


def write(path, text_or_bytes=JPEG):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "w" if isinstance(text_or_bytes, str) else "wb"
    with open(path, mode) as handle:
        handle.write(text_or_bytes)


def kaggle_train(root, rows, images=None, folder="train"):
    """trainLabels.csv with ``rows`` and an image for each id in ``images`` (default all)."""
    write(os.path.join(root, "trainLabels.csv"),
          "image,level\n" + "".join(f"{i},{g}\n" for i, g in rows))
    for image_id in images if images is not None else [i for i, _ in rows]:
        write(os.path.join(root, folder, f"{image_id}.jpeg"))


def test_pairs_images_with_their_grades_sorted_with_patient_ids(tmp_path):
    root = str(tmp_path)
    kaggle_train(root, [("12_right", 3), ("10_left", 0), ("12_left", 4), ("10_right", 1)])
    examples = load_eyepacs(root)
    assert [(e.image_id, e.grade, e.patient_id) for e in examples] == [
        ("10_left", 0, "10"), ("10_right", 1, "10"), ("12_left", 4, "12"), ("12_right", 3, "12")]
    assert examples[2].image_path == os.path.join(root, "train", "12_left.jpeg")


def test_images_in_root_when_no_train_folder_and_extension_order(tmp_path):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 2), ("2_left", 1)], images=["1_left"], folder="")
    write(os.path.join(root, "1_left.png"))  # .jpeg is tried first
    write(os.path.join(root, "2_left.tif"))
    examples = load_eyepacs(root)
    assert [os.path.basename(e.image_path) for e in examples] == ["1_left.jpeg", "2_left.tif"]


def test_solution_csv_usage_filter_and_test_folder(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, "retinopathy_solution.csv"),
          "image,level,Usage\n1_left,0,Public\n1_right,2,Private\n2_left,4,Public\n")
    for image_id in ("1_left", "1_right", "2_left"):
        write(os.path.join(root, "test", f"{image_id}.jpeg"))
    public = load_eyepacs(root, usage="public")
    assert [(e.image_id, e.grade) for e in public] == [("1_left", 0), ("2_left", 4)]
    assert [e.image_id for e in load_eyepacs(root, usage="Private")] == ["1_right"]
    assert len(load_eyepacs(root, labels_csv="retinopathy_solution.csv")) == 3
    with pytest.raises(ConfigError, match="usage"):
        load_eyepacs(root, usage="leaderboard")


def test_usage_filter_on_csv_without_usage_column_names_file(tmp_path):
    kaggle_train(str(tmp_path), [("1_left", 0)])
    with pytest.raises(DataError, match="trainLabels.csv"):
        load_eyepacs(str(tmp_path), usage="public")


def test_missing_root_and_missing_csv(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_eyepacs(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="trainLabels.csv"):
        load_eyepacs(str(tmp_path))


def test_missing_columns_name_file_found_and_expected(tmp_path):
    write(str(tmp_path / "trainLabels.csv"), "image,grade\n1_left,0\n")
    with pytest.raises(DataError) as err:
        load_eyepacs(str(tmp_path))
    message = str(err.value)
    assert "trainLabels.csv" in message and "'grade'" in message and "'level'" in message


def test_missing_image_is_counted_skip_or_strict_error(tmp_path, caplog):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 0), ("1_right", 1), ("3_left", 2)], images=["1_left"])
    examples = load_eyepacs(root)
    assert [e.image_id for e in examples] == ["1_left"]
    assert "skipped 2 example(s)" in caplog.text and "3_left" in caplog.text
    with pytest.raises(DataError, match="1_right"):
        load_eyepacs(root, strict=True)


def test_skip_log_names_at_most_ten_files(tmp_path, caplog):
    root = str(tmp_path)
    kaggle_train(root, [("0_left", 0)] + [(f"{i}_left", 1) for i in range(1, 14)],
                 images=["0_left"])
    load_eyepacs(root)
    assert "skipped 13 example(s)" in caplog.text and "(3 more)" in caplog.text


def test_unlabelled_images_are_ignored_even_in_strict_mode(tmp_path, caplog):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 0)], images=["1_left", "99_left"])
    write(os.path.join(root, "train", "._1_left.jpeg"))  # macOS zip residue: not an image
    examples = load_eyepacs(root, strict=True)
    assert [e.image_id for e in examples] == ["1_left"]
    assert "ignored 1 file(s)" in caplog.text and "99_left.jpeg" in caplog.text


@pytest.mark.parametrize("level", ["5", "-1", "2.5", "two", ""])
def test_bad_grade_names_file_line_and_value(tmp_path, level):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 0), ("1_right", level)])
    with pytest.raises(DataError) as err:
        load_eyepacs(root)
    assert "trainLabels.csv:3" in str(err.value) and repr(level) in str(err.value)


def test_float_written_integer_grade_is_accepted(tmp_path):
    kaggle_train(str(tmp_path), [("1_left", "2.0")])
    assert load_eyepacs(str(tmp_path))[0].grade == 2


def test_duplicate_ids_disagreeing_is_error_agreeing_is_deduped(tmp_path, caplog):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 0), ("2_left", 1), ("1_left", 3)])
    with pytest.raises(DataError) as err:
        load_eyepacs(root)
    assert "'1_left'" in str(err.value) and "lines 2 and 4" in str(err.value)
    kaggle_train(root, [("1_left", 0), ("2_left", 1), ("1_left", 0)])
    assert [e.image_id for e in load_eyepacs(root)] == ["1_left", "2_left"]
    assert "duplicated row" in caplog.text


def test_zero_byte_image_is_skipped_or_strict_error(tmp_path):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 0), ("1_right", 1)], images=["1_left"])
    write(os.path.join(root, "train", "1_right.jpeg"), b"")
    assert [e.image_id for e in load_eyepacs(root)] == ["1_left"]
    with pytest.raises(DataError, match="zero-byte image.*1_right.jpeg"):
        load_eyepacs(root, strict=True)


def test_nothing_left_after_filtering_says_why(tmp_path):
    root = str(tmp_path)
    kaggle_train(root, [("1_left", 0)], images=[])
    os.makedirs(os.path.join(root, "train"))
    with pytest.raises(DataError, match="no usable examples.*no image file.*1_left"):
        load_eyepacs(root)


def test_patient_id_without_side_suffix_is_the_image_id():
    assert eyepacs_patient_id("10_left") == "10"
    assert eyepacs_patient_id("scan7") == "scan7"


def test_header_only_or_unparsable_csv_is_named(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, "trainLabels.csv"), "image,level\n")
    os.makedirs(os.path.join(root, "train"))
    with pytest.raises(DataError, match="trainLabels.csv.*lists no examples"):
        load_eyepacs(root)
    write(os.path.join(root, "trainLabels.csv"), b"image,level\n\xff\xfe1_left,0\n")
    with pytest.raises(DataError, match="trainLabels.csv.*cannot be parsed"):
        load_eyepacs(root)


def test_id_with_and_without_extension_is_one_image(tmp_path):
    import cv2
    import numpy as np
    import pytest
    from data_pipelines.eyepacs import load_eyepacs
    from data_pipelines.records import DataError
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "1_left.jpeg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "trainLabels.csv").write_text("image,level\n1_left,2\n1_left.jpeg,2\n")
    assert len(load_eyepacs(str(tmp_path))) == 1
    (tmp_path / "trainLabels.csv").write_text("image,level\n1_left,2\n1_left.jpeg,3\n")
    with pytest.raises(DataError, match="lines 2 and 3"):
        load_eyepacs(str(tmp_path))
