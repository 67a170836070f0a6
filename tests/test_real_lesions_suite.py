"""The real-data suite on fixtures of the four public formats: the data it prepares (graded
sets split by patient, DIARETDB1 + HEI-MED masks), its set-ups, a short run written up
with paired differences, resolution comparisons and figures."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from coopseg.config import ConfigError
from data_pipelines.records import DataError
from experiments import real_lesions as rl
from experiments import real_lesions_data as rld
from experiments import real_lesions_report as report
from experiments.runner import Runner
from experiments.suites import row_stages
from tests.test_readers_diaretdb1 import CIRCLE, SQUARE, diaretdb1, four_experts
from tests.test_readers_heimed import blob_ids, write_photo


def _fundus(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), np.uint8)
    cv2.circle(image, (size // 2, size // 2), size // 2 - 2, (40, 90, 180), -1)
    return np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)


def public_sets(root) -> str:
    """The four public sets in their public copies' layouts, tiny."""
    root = str(root)
    lesions = four_experts(*[[("Hard_exudates", "High", SQUARE),
                              ("Haemorrhages", "High", CIRCLE)]] * 4)
    diaretdb1(os.path.join(root, "diaretdb1"), {n: lesions for n in range(1, 7)},
              train=[1, 2, 3, 4], test=[5, 6])
    write_photo(os.path.join(root, "heimed", "DMED"), "h1", blob_ids(), "1 exudate\n")
    aptos = os.path.join(root, "aptos")
    os.makedirs(os.path.join(aptos, "train_images_resized"))
    rows = ["id_code,diagnosis"]
    for i in range(30):
        cv2.imwrite(os.path.join(aptos, "train_images_resized", f"a{i:02d}.png"), _fundus(i))
        rows.append(f"a{i:02d},{i % 5}")
    with open(os.path.join(aptos, "train-backup.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    eyepacs = os.path.join(root, "eyepacs")
    os.makedirs(os.path.join(eyepacs, "images"))
    rows = ["image,level"]
    for i in range(15):
        for side in ("left", "right"):
            cv2.imwrite(os.path.join(eyepacs, "images", f"{i}_{side}.jpeg"), _fundus(100 + i))
            rows.append(f"{i}_{side},{i % 5}")
    with open(os.path.join(eyepacs, "trainLabels.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    return root


def test_prepare_splits_graded_sets_by_patient_and_points_at_the_mask_sets(tmp_path):
    root = public_sets(tmp_path / "data")
    data = rld.prepare(root, str(tmp_path / "out"), workers=1)
    assert data.counts["graded_train"] + data.counts["graded_val"] == 60
    manifest = json.load(open(os.path.join(data.graded_train, "manifest.json")))
    assert manifest["counts"]["val"] == data.counts["graded_val"] > 0
    # EyePACS' two eyes of a patient stay on one side of the split.
    import tensorflow as tf
    from data_pipelines import tfrecords
    ids = {split: {tfrecords.parse_example(r)["image/id"].numpy().decode() for r in
                   tf.data.TFRecordDataset(tfrecords.tfrecord_files(data.graded_train, split))}
           for split in ("train", "val")}
    assert not ids["train"] & ids["val"] and len(ids["train"] | ids["val"]) == 60
    for i in range(15):
        sides = {split for split in ids for side in ("left", "right")
                 if f"eyepacs/{i}_{side}" in ids[split]}
        assert len(sides) == 1
    assert data.masks_train == (f"diaretdb1:{os.path.join(root, 'diaretdb1')},"
                                f"heimed:{os.path.join(root, 'heimed')}")
    assert data.masks_val == f"diaretdb1:{os.path.join(root, 'diaretdb1')}"
    assert data.class_names[1:] == ("microaneurysm", "haemorrhage", "hard_exudate",
                                    "soft_exudate")
    with pytest.raises(DataError, match="no eyepacs/ folder"):
        os.rename(os.path.join(root, "eyepacs"), os.path.join(root, "other"))
        rld.prepare(root, str(tmp_path / "out2"))


def test_setups_patch_runs_see_each_image_as_often(tmp_path):
    whole, high, patches, equal_steps = rl.setups("small")
    assert (whole.input_size, high.input_size) == (256, 512)
    assert (patches.input_size, patches.working_size, patches.steps_factor) == (256, 512, 4)
    stages = row_stages(rl.variant("jointseg_two_step", patches.name), "small")
    grader, segmenter = (s.config for s in stages)
    assert segmenter.train.steps == 4 * rl.STEPS["small"] and segmenter.data.working_size == 512
    # The grader stage is the same at every set-up, so a seed trains it once.
    assert grader.train.steps == rl.STEPS["small"] or grader.train.mode == "clf_only"
    assert grader.model.input_size == 128 and grader.data.working_size == 0
    assert row_stages(rl.variant("jointseg_seg_only", equal_steps.name),
                      "small")[0].config.train.steps == rl.STEPS["small"]
    core = rl.rows(["core"], "small")
    assert [v for v in core if not v.startswith(rl.REFERENCE_ROW)] == [
        rl.variant(r, whole.name) for r in rl.CORE_ROWS[1:]]
    assert len(core) == 4 + 2 and len(rl.rows([], "small")) == 4 * len(rl.BASE_ROWS)
    assert rl.rows(["unet_random_init"], "small", [high.name]) == [
        rl.variant(rl.REFERENCE_ROW, high.name), rl.variant("unet_random_init", high.name)]
    with pytest.raises(ConfigError, match="not in suite real_lesions"):
        rl.rows(["jointseg"], "small")
    with pytest.raises(ConfigError, match="set-up 'whole999'"):
        rl.setup_named("whole999", "small")


def test_a_short_run_is_written_up_with_paired_differences(tmp_path):
    root = public_sets(tmp_path / "data")
    out = str(tmp_path / "out")
    data = rld.prepare(root, out, workers=1)
    runner = Runner(out, "tiny", data, [0], report=True, log=lambda _: None)
    # The segmenter alone at the patch set-up (tiles at validation, in the report's
    # AUPR and in the overlays); JointSeg rows train through the same runner as in
    # every other suite, and the paired logic is tested without training below.
    result = report.run(runner, [rl.REFERENCE_ROW], ["patches64of128"], command="test")
    directory = os.path.join(out, rl.NAME)
    text = open(os.path.join(directory, "results.md")).read()
    assert "## mean lesion AUPR" in text and "AUPR, hard_exudate" in text
    assert "Command: `test`" in text
    assert os.path.isfile(os.path.join(directory, "pr_curves.png"))
    assert os.path.isfile(os.path.join(directory, "overlays.png"))
    cell = result["cells"][rl.REFERENCE_ROW]["patches64of128"]
    assert cell["stats"]["mean_lesion_aupr"]["n"] == 1 and cell["verdicts"] == {}
    assert cell["stats"]["wall_time_s"]["mean"] > 0
    assert result["resolution"][rl.REFERENCE_ROW] == []  # one set-up: nothing to compare
    ref = result["cells"][rl.REFERENCE_ROW]["patches64of128"]["per_seed"][0]
    assert ref["aupr/hard_exudate"] is not None and ref["quadratic_kappa"] is None


def test_paired_verdicts_over_seeds():
    def record(seed, aupr):
        return {"seed": seed, "status": "ok", "stages": [
            {"run_dir": f"r{seed}", "metrics": {"segmentation": {"miou_no_background": aupr}},
             "report": {"mean_lesion_aupr": aupr, "lesion_aupr": {"ma": aupr}}}]}

    setups = rl.setups("tiny")[:2]
    records = {}
    for setup, shift in zip(setups, (0.0, 0.1)):
        records[rl.variant(rl.REFERENCE_ROW, setup.name)] = {
            "seeds": [record(s, 0.3 + shift + 0.01 * s) for s in range(3)]}
        records[rl.variant("unet_random_init", setup.name)] = {
            "seeds": [record(s, 0.2 + shift + 0.02 * s) for s in range(3)]}
    result = report.suite_results(records, [rl.REFERENCE_ROW, "unet_random_init"], setups,
                                  {"scale": "tiny", "seeds": [0, 1, 2], "data": {}})
    assert result["cells"]["unet_random_init"][setups[0].name]["verdicts"][
        "mean_lesion_aupr"] == "hurts"
    higher, = result["resolution"][rl.REFERENCE_ROW]
    assert higher["verdicts"]["aupr/ma"] == "helps"
    assert higher["diffs"]["aupr/ma"]["mean"] == pytest.approx(0.1)
    assert "whole128 − whole64" in report.render_markdown(result)
