"""The data-efficiency suite: nested mask subsets, its row variants, and its statistics
and report (on hand-made run records: no training here; the tiny suite end to end is a
slow test)."""
import json
import os

import numpy as np
import pytest

from coopseg.config import ConfigError
from data_pipelines.subsets import nested_subset
from experiments import data_efficiency as de
from experiments import learning_curve as lc
from experiments.runner import DataSource, fingerprint, prepare_stages

FAKE_DATA = DataSource("eyepacs", "/d/graded_train", "/d/graded_val", "generic",
                       "/d/masks_train", "/d/masks_val")


# ----------------------------------------------------------------------------- subsets
def test_subsets_nest_and_do_not_depend_on_anything_but_the_list():
    names = [f"img_{i:03d}.png" for i in range(50)]
    small, mid, full = (nested_subset(names, n) for n in (5, 20, 50))
    assert small == mid[:5] and mid == full[:20]
    assert sorted(full) == names and full != names  # a permutation, not the sorted order
    assert nested_subset(names, 0) == names
    assert nested_subset(list(names), 5) == small  # same list, same subset: any seed


def test_asking_for_more_images_than_the_set_has_names_the_set():
    with pytest.raises(ConfigError, match=r"masks_train_count=11.*/data/lesions.*only 10"):
        nested_subset(list(range(10)), 11, source="/data/lesions")


def test_training_reads_only_the_subset(tmp_path):
    from coopseg.training.inputs import _mask_sources
    from data_pipelines.decode import DecodeReport
    from experiments.scales import experiment
    from tests.helpers import tiny_synthetic_config

    cfg = tiny_synthetic_config(str(tmp_path / "data"), str(tmp_path / "run"))
    cfg.data.masks_train_count = 3
    seen = set()
    train, val = _mask_sources(cfg, DecodeReport(), True, order_seed=0)
    for image, _ in train.take(30):
        seen.add(float(np.asarray(image).astype(np.float64).sum()))
    assert len(seen) == 3
    # Validation never takes a subset.
    assert sum(1 for _ in val) == 8
    assert experiment("tiny").data.masks_train_count == 0


# ------------------------------------------------------------------------------ rows
def test_variant_names_round_trip():
    assert de.variant("jointseg_two_step", 30) == "jointseg_two_step__masks30"
    assert de.split_variant("jointseg_two_step__masks30") == ("jointseg_two_step", 30)
    assert de.split_variant("jointseg") == ("jointseg", None)
    assert de.rows((10, 30), ["a", "b"]) == ["a__masks10", "b__masks10", "a__masks30",
                                              "b__masks30"]


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_rows_differ_only_in_what_they_test_and_grader_stages_are_shared(scale):
    stages = {row: prepare_stages(de.variant(row, 10), scale, FAKE_DATA, 0, "/out")
              for row, _ in de.BASE_ROWS}
    for row, row_stages in stages.items():
        final = row_stages[-1].config
        assert final.data.masks_train_count == 10
        assert final.run.eval_every * de.EVALS_PER_RUN == final.train.steps
        reference = stages[de.REFERENCE_ROW][-1].config
        assert final.train.steps == reference.train.steps  # one budget and schedule
        assert final.train.seg == reference.train.seg
    # The two-step row's grader never reads masks: the same stage at every N, trained once.
    pre10 = prepare_stages(de.variant("jointseg_two_step", 10), scale, FAKE_DATA, 0, "/out")[0]
    pre30 = prepare_stages(de.variant("jointseg_two_step", 30), scale, FAKE_DATA, 0, "/out")[0]
    assert pre10.config.train.mode == "clf_only" and pre10.config.data.masks_train_count == 0
    assert fingerprint(pre10.config) == fingerprint(pre30.config)
    seg10, seg30 = (prepare_stages(de.variant("jointseg_seg_only", n), scale, FAKE_DATA, 0,
                                   "/out")[0] for n in (10, 30))
    assert fingerprint(seg10.config) != fingerprint(seg30.config)


def test_earlier_runs_keep_their_fingerprints():
    """The new fields at their defaults leave the fingerprint of a config written before
    they existed unchanged (finished suite stages stay valid)."""
    from coopseg.config import to_dict
    from experiments.runner import fingerprint_of_dict
    from experiments.scales import experiment

    config = experiment("small")
    old = to_dict(config)
    del old["train"]["cooperation"], old["model"]["per_agent_batch_norm"]
    del old["data"]["masks_train_count"]
    assert fingerprint_of_dict(old) == fingerprint(config)
    config.train.cooperation.gradient_balance = "pcgrad"
    assert fingerprint(config) != fingerprint_of_dict(old)


def test_mask_counts_flag_and_graded_set_size_are_checked(tmp_path):
    assert de.mask_counts("small") == (10, 30, 100, 300)
    assert de.mask_counts("small", ["30", "10", "30"]) == (10, 30)
    with pytest.raises(ConfigError, match="integers"):
        de.mask_counts("small", ["ten"])
    with pytest.raises(ConfigError, match=">= 1"):
        de.mask_counts("small", ["0", "5"])
    with pytest.raises(ConfigError, match="at least 10 x"):
        de.synthetic_source(str(tmp_path / "d"), "tiny", (4, 8), graded_images=50)


def test_a_subrange_of_mask_counts_reuses_the_full_pool(tmp_path):
    """Running only N=4 must neither shrink the set nor change which 4 images train."""
    first = de.synthetic_source(str(tmp_path / "d"), "tiny", (4,), graded_images=80)
    pool = max(de.MASK_COUNTS["tiny"])
    assert first.counts["lesions_train"] == pool
    stamp = os.stat(os.path.join(first.masks_train, os.listdir(first.masks_train)[0])).st_mtime_ns
    again = de.synthetic_source(str(tmp_path / "d"), "tiny", (4, pool), graded_images=80)
    assert again.counts == first.counts
    assert os.stat(os.path.join(again.masks_train,
                                os.listdir(again.masks_train)[0])).st_mtime_ns == stamp


# ------------------------------------------------------------------------- statistics
def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    a, b = [0.30, 0.34, 0.32], [0.25, 0.26, 0.30]
    d = np.array(a) - np.array(b)
    half = 4.303 * d.std(ddof=1) / np.sqrt(3)
    out = lc.paired_difference(a, b)
    assert out["mean"] == pytest.approx(d.mean())
    assert (out["low"], out["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert lc.verdict(out) == ("helps" if d.mean() - half > 0 else "within noise")
    assert lc.verdict(lc.paired_difference([0.1, 0.1, 0.1], [0.2, 0.21, 0.2])) == "hurts"
    assert lc.verdict(lc.paired_difference([0.1, 0.3], [0.2, 0.2])) == "within noise"
    assert lc.verdict(lc.paired_difference([0.3], [0.2])) == "one seed: no verdict"
    assert lc.paired_difference([None, 0.3], [0.2, None])["n"] == 0
    assert lc.t95(1) == 12.706 and lc.t95(11) == 2.228 and lc.t95(100) == 1.96


def test_steps_to_reach():
    curve = [(100, 0.1), (200, 0.25), (300, 0.2), (400, 0.3)]
    assert lc.steps_to_reach(curve, 0.2) == 200
    assert lc.steps_to_reach(curve, 0.5) is None


def _record(seed, lesion, aupr, curve, top1=None):
    metrics = {"segmentation": {"miou": lesion + 0.1, "miou_no_background": lesion}}
    if top1 is not None:
        metrics["classification"] = {"top1_accuracy": top1, "quadratic_kappa": 0.5}
    stage = {"status": "ok", "metrics": metrics, "wall_time_s": 60.0,
             "curve": {"segmentation/miou_no_background": curve},
             "report": {"mean_lesion_aupr": aupr, "referable_roc_auc": 0.9}}
    return {"seed": seed, "status": "ok", "stages": [stage]}


def _fake_records(counts=(10, 30)):
    """seg_only and jointseg: jointseg is 5 points better at N=10 in every seed (helps),
    equal at N=30 up to seed noise (within noise)."""
    records = {}
    for n in counts:
        ref = [0.20 + 0.01 * s + (0.1 if n == 30 else 0) for s in range(3)]
        joint = [r + (0.05 if n == 10 else (-0.01, 0.0, 0.012)[s]) for s, r in enumerate(ref)]
        records[de.variant(de.REFERENCE_ROW, n)] = {"seeds": [
            _record(s, ref[s], 0.3, [(100, 0.1), (200, ref[s])]) for s in range(3)]}
        records[de.variant("jointseg", n)] = {"seeds": [
            _record(s, joint[s], 0.35, [(100, joint[s]), (200, joint[s])], top1=0.6)
            for s in range(3)]}
    return records


def test_results_give_verdicts_per_n_and_a_report(tmp_path):
    result = lc.curve_results(_fake_records(), [de.REFERENCE_ROW, "jointseg"], (10, 30),
                              {"scale": "tiny", "seeds": [0, 1, 2], "data": {}})
    cells = result["cells"]["jointseg"]
    assert cells["10"]["verdict"] == "helps" and cells["30"]["verdict"] == "within noise"
    assert cells["10"]["vs_reference"]["lesion_miou"]["mean"] == pytest.approx(0.05)
    assert cells["10"]["stats"]["mean_lesion_aupr"]["mean"] == pytest.approx(0.35)
    assert result["summary"]["jointseg"]["helps_where_masks_are_scarce"] is True
    # Steps to 90 % of seg-only's final lesion mIoU: jointseg is there at the first
    # validation, the reference only at its last.
    assert cells["10"]["steps_to_reach"]["per_seed"] == [100, 100, 100]
    assert result["cells"][de.REFERENCE_ROW]["10"]["steps_to_reach"]["per_seed"] == [200] * 3
    paths = lc.write(result, str(tmp_path / "out"))
    md = open(paths["markdown"]).read()
    assert "| JointSeg (this scale's recipe) | helps | within noise | yes |" in md
    assert "+5.0 [" in md
    assert json.load(open(paths["json"]))["cells"]["jointseg"]["10"]["verdict"] == "helps"
    import cv2
    image = cv2.imread(paths["figure"])
    assert image is not None and image.shape[1] > 2 * image.shape[0]  # two panels
    assert os.listdir(paths["tensorboard"])


def test_a_missing_row_is_reported_as_not_run():
    records = _fake_records()
    del records[de.variant("jointseg", 30)]
    result = lc.curve_results(records, [de.REFERENCE_ROW, "jointseg"], (10, 30),
                              {"scale": "tiny", "seeds": [0, 1, 2], "data": {}})
    assert result["cells"]["jointseg"]["30"]["verdict"] == "not run"
    assert "not run" in lc.render_markdown(result)


def test_report_only_trains_nothing_and_reports_what_finished(tmp_path):
    from experiments.runner import Runner

    runner = Runner(str(tmp_path / "out"), "tiny", FAKE_DATA, [0, 1], log=lambda *_: None)
    result = lc.run(runner, (4, 8), ["jointseg_seg_only", "jointseg"], train=False)
    assert result["cells"]["jointseg"]["4"]["verdict"] == "not run"
    assert result["cells"]["jointseg"]["4"]["per_seed"] == {}
    assert "| JointSeg (this scale's recipe) | not run | not run |" in lc.render_markdown(result)
    assert sorted(os.listdir(tmp_path / "out")) == [de.NAME]  # no run directory made
    assert runner.seeds == [0, 1]


@pytest.mark.slow  # 18 tiny training stages: ~8 minutes on 2 idle cores
def test_tiny_suite_end_to_end(tmp_path):
    from experiments.runner import Runner

    counts = de.MASK_COUNTS["tiny"]
    data = de.synthetic_source(str(tmp_path / "data"), "tiny", counts)
    assert data.counts["graded_train"] >= 10 * max(counts)
    rows = ["jointseg_seg_only", "jointseg", "jointseg_two_step", "coop_per_agent_bn"]
    runner = Runner(str(tmp_path / "out"), "tiny", data, [0, 1], log=lambda *_: None,
                    report=True)
    result = lc.run(runner, counts, rows)
    for row in rows:
        for n in counts:
            cell = result["cells"][row][str(n)]
            assert set(cell["per_seed"]) == {0, 1}
            stats = cell["stats"]
            assert stats["lesion_miou"]["n"] == 2 and stats["mean_lesion_aupr"]["n"] == 2
            assert all(len(c) == de.EVALS_PER_RUN for c in cell["curves"].values())
            if row != de.REFERENCE_ROW:
                assert cell["vs_reference"]["lesion_miou"]["low"] is not None
                assert cell["verdict"] in ("helps", "hurts", "within noise")
    # The grader stage of the two-step row trained once per seed, reused at the other N.
    records = [json.load(open(tmp_path / "out" / de.variant("jointseg_two_step", n) / "seed0"
                              / "pretrain" / "stage.json")) for n in counts]
    assert sum(bool(r.get("reused_from")) for r in records) == 1
    out = tmp_path / "out" / de.NAME
    assert (out / "results.md").is_file() and (out / "learning_curves.png").is_file()


def test_rows_flag_takes_names_or_core():
    assert de.selected_rows([]) == []
    assert de.selected_rows(["core"]) == list(de.CORE_ROWS)
    assert de.selected_rows(["jointseg", "core"])[:2] == ["jointseg", de.REFERENCE_ROW]
    assert set(de.CORE_ROWS) <= {r for r, _ in de.BASE_ROWS}
    with pytest.raises(ConfigError, match="unet3d not in suite data_efficiency"):
        de.selected_rows(["unet3d"])
