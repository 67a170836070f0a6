"""The paper's experiments: row configs, fairness between rows, the runner end to end.

End-to-end tests run the tiny suites for two steps per stage on a tiny synthetic set
generated once for the module; they check wiring and reporting, not accuracy.
"""
import json
import os

import pytest

from coopseg.config import LESION_CLASSES, ConfigError, to_dict
from experiments import results as results_lib
from experiments.registry import SCALES, get_experiment
from experiments.run import real_data, run_suites, synthetic_data
from experiments.runner import DataSource, Runner, prepare_stages
from experiments.suites import ROWS, SUITES, Claim, get_suites, row_stages

STEPS = 2  # per stage in the end-to-end runs
FAKE_DATA = DataSource("eyepacs", "/d/graded_train", "/d/graded_val", "generic",
                       "/d/masks_train", "/d/masks_val")
TWO_STEP_ROWS = ("fcn8s_two_step", "unet_two_step")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _differences(a, b) -> set:
    """Config fields (dotted) in which two configs differ, ignoring name and run dirs."""
    fa, fb = _flat(to_dict(a)), _flat(to_dict(b))
    ignored = {"name", "run.model_dir", "train.init_encoder_from"}
    return {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k not in ignored}


def _stage_names(row: str):
    if row in TWO_STEP_ROWS:
        return ["pretrain", "segment"]
    if row.startswith("decouplednet_") and "deconvnet" not in row:
        return ["classifier", "segmenter"]
    return ["train"]


def _final(row: str, scale: str, seed: int = 0):
    return prepare_stages(row, scale, FAKE_DATA, seed, "/out")[-1].config


# ------------------------------------------------------------------- configs, fairness
@pytest.mark.parametrize("scale", SCALES)
def test_every_row_loads_and_validates_at_every_scale(scale):
    rows = {r for suite in SUITES.values() for r in suite.rows}
    assert rows <= set(ROWS)
    for row in sorted(rows | {"vgg16_pretrain", "jointseg_encoder_pretrain"}):
        config = get_experiment(row, scale).validate()  # the coopseg-train path
        assert config.name == row
        stages = row_stages(row, scale)
        assert stages[-1].config.method == config.method
        assert [s.name for s in stages] == _stage_names(row)


@pytest.mark.parametrize("scale", SCALES)
def test_segmentation_rows_differ_only_in_model_and_initialisation(scale):
    joint = _final("jointseg", scale)
    for suite in ("table1", "table2"):
        for row in SUITES[suite].rows:
            config = _final(row, scale)
            # Same steps, seed, data, input size, seg batch and LR schedule, class weighting.
            assert _differences(config, joint) <= {"method", "train.mode",
                                                   "model.vgg_width_multiplier"}, row
            assert config.train.mode == ("joint" if row == "jointseg" else "seg_only")


@pytest.mark.parametrize("scale", SCALES)
def test_classification_rows_share_input_batch_and_schedule(scale):
    rows = [_final(r, scale) for r in SUITES["table3"].rows]
    joint = _final("jointseg_classifier", scale)
    assert joint.method == "jointseg" and joint.train.mode == "joint"
    for config in rows:
        assert _differences(config, joint) <= {"method", "train.mode"}
        assert config.model.input_size == joint.model.input_size >= 75  # InceptionV3's minimum
        assert config.train.steps == joint.train.steps and config.train.seed == 0
        assert to_dict(config.data) == to_dict(joint.data)
        clf, ref = config.train.clf_agent(), joint.train.clf_agent()
        assert clf.batch_size == ref.batch_size
        assert clf == ref  # batch, LR schedule, momentum, weight decay: all the same
    assert {c.method for c in rows} == {"vgg19", "inceptionv3", "jointseg"}


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("suite", [s for s in SUITES if s.startswith("ablation")])
def test_ablation_rows_change_only_the_ablated_knob(scale, suite):
    knob = SUITES[suite].tables[0].columns[0].setting
    joint = _final("jointseg", scale)
    assert "jointseg" in SUITES[suite].rows
    for row in SUITES[suite].rows:
        if row != "jointseg":
            diffs = _differences(_final(row, scale), joint)
            # batch_ratio 1 equals the tiny scale's mid value, and the paper's LR ratio 30
            # is the paper scale's default, so there "no difference" is allowed.
            assert diffs <= {knob}, (row, diffs)
            assert diffs or (suite, scale) in (("ablation_batch_ratio", "tiny"),
                                               ("ablation_lr_ratio", "paper")), row


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("row", TWO_STEP_ROWS)
def test_two_step_pretraining_gets_the_joint_classifier_budget(scale, row):
    pretrain, segment = prepare_stages(row, scale, FAKE_DATA, 3, "/out")
    joint = _final("jointseg", scale, seed=3)
    p = pretrain.config
    assert (pretrain.name, p.train.mode) == ("pretrain", "clf_only")
    assert p.method == ("vgg16" if row == "fcn8s_two_step" else "jointseg")
    assert p.train.steps == joint.train.steps == segment.config.train.steps
    assert p.train.seed == segment.config.train.seed == 3
    assert p.train.clf_agent() == joint.train.clf_agent()
    # Same model shape in both stages, so every encoder weight can be handed over.
    assert to_dict(p.model) == to_dict(segment.config.model)
    assert p.train.init_encoder_from == ""
    assert p.run.model_dir == f"/out/{row}/seed3/pretrain"
    # Which run the segment stage starts from is set once, by the runner, from its
    # predecessor's record (which may be another row's run, reused); no row names one.
    assert segment.config.train.init_encoder_from == ""


def test_inceptionv3_minimum_matches_the_model_builder():
    from coopseg.models.baselines.classifiers import INCEPTIONV3_MIN_SIZE
    from experiments.common import INCEPTIONV3_MIN_SIZE as ours
    assert ours == INCEPTIONV3_MIN_SIZE


def test_unknown_suite_and_rows_name_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="table1.*ablation_labels.*all"):
        get_suites("table9")
    runner = Runner(str(tmp_path), "tiny", FAKE_DATA, [0])
    with pytest.raises(ConfigError, match="vgg19_classifier"):
        run_suites("table3", runner, rows=["vgg16"])
    with pytest.raises(ConfigError, match="scale"):
        Runner(str(tmp_path), "huge", FAKE_DATA, [0])


# ------------------------------------------------------------------------- claims
def _summary(**means):
    return {row: {"miou": {"mean": m, "std": None, "n": 1}} for row, m in means.items()}


def test_mask_only_suites_need_no_graded_set(tmp_path):
    masks = tmp_path / "VOC2012"
    masks.mkdir()
    with pytest.raises(ConfigError, match="--graded_train, --graded_val"):
        real_data("eyepacs", "", "", "voc", str(masks), str(masks))
    data = real_data("eyepacs", "", "", "voc", str(masks), str(masks), needs_graded=False)
    assert data.graded_train == "" and data.class_names[0] == "background"
    assert len(data.class_names) == 21  # VOC's classes unless --class_names says otherwise
    with pytest.raises(ConfigError, match="--masks_val"):
        real_data("eyepacs", "", "", "voc", str(masks), "", needs_graded=False)
    with pytest.raises(ConfigError, match="background plus"):
        real_data("eyepacs", "", "", "generic", str(masks), str(masks), needs_graded=False,
                  class_names=["background"])
    assert not SUITES["decouplednet_table1"].needs_graded
    assert all(s.needs_graded for n, s in SUITES.items() if n != "decouplednet_table1")


@pytest.mark.parametrize("row", ["decouplednet_5", "decouplednet_deconvnet_5"])
def test_a_mask_sets_own_classes_reach_every_stage(row):
    voc = DataSource("eyepacs", "", "", "voc", "/voc/VOC2012", "/voc/val.txt",
                     class_names=("background",) + tuple(f"c{i}" for i in range(20)))
    for stage in prepare_stages(row, "tiny", voc, 0, "/out"):
        config = stage.config
        assert config.data.class_names == voc.class_names
        assert config.model.num_seg_classes == 21
        assert config.data.mask_priority == ()  # lesion overlap order dropped


def _written_by_an_earlier_coopseg(config) -> dict:
    """``config`` as an earlier coopseg wrote config.json: run settings inside ``train``,
    no ``run`` part, ``decoupled.classifier_run``, and no fields added since."""
    older = to_dict(config)
    older["train"].update(older.pop("run"))
    older["decoupled"]["classifier_run"] = ""
    del older["model"]["sync_batch_norm"], older["train"]["cooperation"]
    return older


def test_runs_from_before_a_new_config_field_keep_their_fingerprint():
    from experiments.runner import fingerprint, fingerprint_of_dict

    config = _final("jointseg", "tiny")
    older = _written_by_an_earlier_coopseg(config)
    assert fingerprint_of_dict(older) == fingerprint(config)
    config.model.sync_batch_norm = True  # a new field away from its default
    assert fingerprint_of_dict(older) != fingerprint(config)
    config.model.sync_batch_norm = False
    # How a run is executed does not change what it learns.
    config.run.profile_steps, config.run.eval_every, config.run.model_dir = "2,3", 7, "/x"
    config.name = "renamed"
    assert fingerprint_of_dict(older) == fingerprint(config)
    config.train.eval_batches = 2  # what its reported metrics cover does
    assert fingerprint_of_dict(older) != fingerprint(config)


def test_runs_from_before_split_and_retyped_fields_keep_their_fingerprint():
    """config.json files written when ``data.flip`` was one switch and
    ``data.color_jitter`` a bool still load, and still name the same stage."""
    from coopseg.config import from_dict
    from experiments.runner import fingerprint, fingerprint_of_dict

    config = _final("jointseg", "small")
    older = _written_by_an_earlier_coopseg(config)
    data = older["data"]
    del data["flip_left_right"], data["flip_up_down"]
    data["flip"], data["color_jitter"] = True, True  # "mild" today
    for field in ("deterministic", "backbone_weights"):
        del older["train"][field]
    del older["model"]["vgg_batch_norm"]
    assert fingerprint_of_dict(older) == fingerprint(config)
    loaded = from_dict(older)
    assert (loaded.data.flip_left_right, loaded.data.flip_up_down) == (True, True)
    assert loaded.data.color_jitter == "mild"
    assert loaded.run.model_dir == config.run.model_dir
    config.data.flip_up_down = False  # now a different stage
    assert fingerprint_of_dict(older) != fingerprint(config)


def test_decouplednet_configs_with_a_classifier_run_load_as_the_one_hand_over_field():
    from coopseg.config import ConfigError, from_dict

    older = _written_by_an_earlier_coopseg(_final("decouplednet_5", "tiny"))
    older["train"]["init_encoder_from"] = ""  # stage 2 named its classifier here instead
    older["decoupled"]["classifier_run"] = "/runs/stage1"
    assert from_dict(older).train.init_encoder_from == "/runs/stage1"
    older["train"]["init_encoder_from"] = "/runs/other"
    with pytest.raises(ConfigError, match="two different stage-1 runs"):
        from_dict(older)


def test_stages_recorded_with_the_earlier_fingerprint_are_found_finished(tmp_path):
    """A suite directory written before fingerprints hashed only what defines a result:
    its records hold another kind of hash; the runner recomputes it from their configs,
    chaining through the stage each started from, and trains nothing."""
    from experiments.runner import STAGE_RECORD, Runner, prepare_stages

    data = DataSource("eyepacs", "/g/train", "/g/val", "generic", "/m/train", "/m/val")
    out = str(tmp_path)
    stages = prepare_stages("jointseg_two_step", "tiny", data, 0, out)
    previous = ""
    for stage in stages:
        run_dir = stage.config.run.model_dir
        os.makedirs(run_dir)
        stage.config.train.init_encoder_from = previous  # as the runner ran it
        previous = run_dir
        record = {"row": "jointseg_two_step", "seed": 0, "stage": stage.name, "status": "ok",
                  "fingerprint": "0123abcd", "run_dir": run_dir, "reused_from": None,
                  "config": _written_by_an_earlier_coopseg(stage.config), "metrics": {},
                  "method": "jointseg", "mode": stage.config.train.mode, "error": "",
                  "curve": {}, "report": {}, "wall_time_s": 60.0}
        with open(os.path.join(run_dir, STAGE_RECORD), "w") as f:
            json.dump(record, f)
    runner = Runner(out, "tiny", data, [0], log=lambda _: None)
    seed = runner.row("jointseg_two_step", train=True)["seeds"][0]
    assert [r["action"] for r in seed["stages"]] == ["finished earlier"] * 2
    # A changed first stage makes both stages another configuration.
    with open(os.path.join(stages[0].config.run.model_dir, STAGE_RECORD)) as f:
        first = json.load(f)
    first["config"]["train"]["steps"] += 1
    with open(os.path.join(stages[0].config.run.model_dir, STAGE_RECORD), "w") as f:
        json.dump(first, f)
    with pytest.raises(ConfigError, match="another configuration"):
        Runner(out, "tiny", data, [0], log=lambda _: None).row("jointseg_two_step")


def test_poly_decay_is_teflas_at_paper_scale_and_linear_on_the_cpu_scales():
    # TEFLA's PolyDecayPolicy: lr0 * (1 - t/T) ** 10, down to 0.
    for scale in SCALES:
        tc = _final("jointseg", scale).train
        for agent in (tc.seg, tc.clf_agent()):
            expected = (10.0, 0.0) if scale == "paper" else (1.0, agent.learning_rate * 1e-4)
            assert agent.decay_power == expected[0], (scale, agent)
            assert agent.end_learning_rate == pytest.approx(expected[1]), (scale, agent)
    assert _final("jointseg", "paper").data.color_jitter == "tefla"


@pytest.mark.parametrize("scale", SCALES)
def test_decouplednet_rows_use_hong_et_als_augmentation(scale):
    """Random crops and left/right mirroring only, in both stages (not JointSeg's TEFLA
    augmentation); and DecoupledNet's own (Caffe) schedule, not TEFLA's power 10."""
    decoupled = [r for r in ROWS if r.startswith("decouplednet_")]
    assert len(decoupled) == 12
    for row in decoupled:
        for stage in prepare_stages(row, scale, FAKE_DATA, 0, "/out"):
            d, tc = stage.config.data, stage.config.train
            assert (d.flip_left_right, d.flip_up_down, d.color_jitter, d.random_pad,
                    d.affine) == (True, False, "none", 0, False), (row, stage.name)
            assert tc.seg.decay_power == tc.clf.decay_power == 1.0


def test_lr_ratio_ablation_has_the_papers_ratio_and_claims_name_it():
    suite = SUITES["ablation_lr_ratio"]
    for scale in SCALES:
        assert _final("ablation_lr_ratio_30", scale).train.lr_ratio == 30.0
    assert _final("jointseg", "paper").train.lr_ratio == 30.0
    assert _final("jointseg", "small").train.lr_ratio == 1.5
    for claim in suite.claims:  # about ratio 30 itself, whatever the scale's default is
        assert claim.a == "ablation_lr_ratio_30" and "30" in claim.text, claim


def test_claims_are_computed_from_the_numbers():
    labels = {"a": "A", "b": "B"}
    greater = Claim("A > B", "T", "miou", "a", "b")
    assert results_lib.evaluate_claim(greater, _summary(a=0.5, b=0.4), labels, {})["verdict"] \
        == "supported"
    result = results_lib.evaluate_claim(greater, _summary(a=0.4, b=0.5), labels, {})
    assert result["verdict"] == "not supported" and "40.0 vs B 50.0" in result["detail"]
    assert results_lib.evaluate_claim(greater, _summary(a=0.4), labels, {})["verdict"] \
        == "not evaluated"
    not_worse = Claim("A ~ B", "T", "miou", "a", "b", relation="not_worse", tolerance=2.0)
    assert results_lib.evaluate_claim(not_worse, _summary(a=0.39, b=0.40), labels, {})["verdict"] \
        == "supported"
    assert results_lib.evaluate_claim(not_worse, _summary(a=0.37, b=0.40), labels, {})["verdict"] \
        == "not supported"
    noisy = {"a": {"miou": results_lib.mean_std([0.50, 0.40])},
             "b": {"miou": results_lib.mean_std([0.44, 0.44])}}
    result = results_lib.evaluate_claim(greater, noisy, labels, {})
    assert result["verdict"] == "supported" and "within seed noise" in result["detail"]


def _clf_seed(confusion):
    stage = {"metrics": {"classification": {"top1_accuracy": 0.5, "confusion_matrix": confusion}}}
    return {"status": "ok", "stages": [stage]}


def test_a_classifier_that_predicts_one_grade_is_flagged():
    collapsed = results_lib.row_metrics(_clf_seed([[3, 0], [2, 0]]))  # rows: true, cols: predicted
    learned = results_lib.row_metrics(_clf_seed([[3, 0], [1, 1]]))
    assert (collapsed["single_grade"], learned["single_grade"]) == (1.0, 0.0)
    summaries = {"a": results_lib.summarize_row({"seeds": [_clf_seed([[3, 0], [1, 1]])]}),
                 "b": results_lib.summarize_row({"seeds": [_clf_seed([[3, 0], [2, 0]])]})}
    claim = Claim("A > B", "T", "top1_accuracy", "a", "b")
    detail = results_lib.evaluate_claim(claim, summaries, {"a": "A", "b": "B"}, {})["detail"]
    assert "B predicts one grade" in detail and "A predicts" not in detail


def test_mean_std_ignores_undefined_values():
    assert results_lib.mean_std([0.2, None, 0.4]) == pytest.approx(
        {"mean": 0.3, "std": 0.1414213, "n": 2})
    assert results_lib.mean_std([None]) == {"mean": None, "std": None, "n": 0}


# -------------------------------------------------------------------- end to end (tiny)
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthetic_data(str(tmp_path_factory.mktemp("synthetic")), "tiny")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("experiments"))


@pytest.fixture(scope="module")
def table1(tiny_data, out_dir):
    lines = []
    results = run_suites("table1", Runner(out_dir, "tiny", tiny_data, [0], steps=STEPS,
                                          log=lines.append))
    return results["table1"], lines


@pytest.fixture(scope="module")
def table3(table1, tiny_data, out_dir):
    lines = []
    results = run_suites("table3", Runner(out_dir, "tiny", tiny_data, [0], steps=STEPS,
                                          log=lines.append))
    return results["table3"], lines


def _read(out_dir, suite):
    with open(os.path.join(out_dir, suite, "results.json")) as f:
        data = json.load(f)
    with open(os.path.join(out_dir, suite, "results.md")) as f:
        return data, f.read()


def test_table1_trains_every_row_and_hands_over_the_encoder(table1, out_dir):
    _, lines = table1
    data, md = _read(out_dir, "table1")
    assert set(data["rows"]) == set(SUITES["table1"].rows)
    for name, row in data["rows"].items():
        (seed,) = row["seeds"]
        assert seed["status"] == "ok", (name, seed)
        for stage in seed["stages"]:
            assert stage["config"]["train"]["steps"] == STEPS
            assert stage["metrics"], (name, stage["stage"])
    for name in TWO_STEP_ROWS:
        pretrain, segment = data["rows"][name]["seeds"][0]["stages"]
        assert pretrain["mode"] == "clf_only" and segment["mode"] == "seg_only"
        assert segment["config"]["train"]["init_encoder_from"] == pretrain["run_dir"]
        assert os.listdir(os.path.join(pretrain["run_dir"], "checkpoints"))
        assert "classification" in pretrain["metrics"]
        assert data["rows"][name]["summary"]["pretrain_top1_accuracy"]["n"] == 1
    # A progress line per row, then one naming the results file.
    assert sum("-> mIoU" in line for line in lines) == 3
    assert lines[-1].endswith(os.path.join("table1", "results.md"))
    # The paper's numbers beside ours, and the claim section computed from our numbers.
    for number in ("55.3", "64.4", "66.1"):
        assert number in md
    assert "## Which claims our run supports" in md
    per_class = md.split("## Per-class IoU (ours)")[1].splitlines()[2]
    assert per_class == "| Method | " + " | ".join(LESION_CLASSES) + " |"
    miou = {n: r["summary"]["miou"]["mean"] for n, r in data["rows"].items()}
    for claim in data["claims"]:
        expected = "supported" if miou[claim["a"]] > miou[claim["b"]] else "not supported"
        assert claim["verdict"] == expected, claim
        assert f"**{expected}**" in md


def test_table3_reports_both_paper_tables(table3, out_dir):
    data, md = _read(out_dir, "table3")
    assert "## Table III" in md and "## Table IV" in md
    for number in ("82.5", "84.3", "85.1", "85.3", "87.2", "88.1", "89.5", "94.7", "95.5", "95.1"):
        assert number in md
    for name in SUITES["table3"].rows:
        summary = data["rows"][name]["summary"]
        for metric in ("top1_accuracy", "top2_accuracy", "binary_accuracy"):
            assert 0.0 <= summary[metric]["mean"] <= 1.0, (name, metric)
        assert summary["top2_accuracy"]["mean"] >= summary["top1_accuracy"]["mean"]
    assert {c["verdict"] for c in data["claims"]} <= {"supported", "not supported"}
    assert "Per-class IoU" not in md  # a classification report
    assert len(data["claims"]) == len(SUITES["table3"].claims)
    # A stage whose config equals a finished stage of another row is reused, not retrained.
    (stage,) = data["rows"]["jointseg_classifier"]["seeds"][0]["stages"]
    same = _differences(_final("jointseg_classifier", "tiny"), _final("jointseg", "tiny")) == set()
    assert bool(stage.get("reused_from")) == same


def test_second_run_skips_finished_rows(table1, tiny_data, out_dir):
    records = {p: os.path.getmtime(p) for p in _stage_records(out_dir, "table1")}
    lines = []
    run_suites("table1", Runner(out_dir, "tiny", tiny_data, [0], steps=STEPS, log=lines.append))
    assert {p: os.path.getmtime(p) for p in _stage_records(out_dir, "table1")} == records
    row_lines = [line for line in lines if " seed 0: " in line]
    assert len(row_lines) == 3 and all("trained" not in line for line in row_lines), lines
    assert all("finished earlier" in line for line in row_lines)


def test_a_changed_config_is_refused_unless_rerun(table1, tiny_data, out_dir):
    with pytest.raises(ConfigError, match="train.steps.*--rerun"):
        run_suites("table1", Runner(out_dir, "tiny", tiny_data, [0], steps=STEPS + 1),
                   rows=["jointseg"])


def _stage_records(out_dir, suite):
    return [os.path.join(out_dir, row, "seed0", stage.name, "stage.json")
            for row in SUITES[suite].rows for stage in row_stages(row, "tiny")]


DECOUPLED_ROWS = ("decouplednet_5", "decouplednet_str_5", "decouplednet_deconvnet_5")


@pytest.fixture(scope="module")
def decoupled(tiny_data, out_dir):
    return run_suites("decouplednet_table1", Runner(out_dir, "tiny", tiny_data, [0], steps=STEPS,
                                                    log=lambda line: None),
                      rows=DECOUPLED_ROWS)["decouplednet_table1"]


def test_decouplednet_rows_run_through_the_same_runner(decoupled, out_dir):
    data, md = _read(out_dir, "decouplednet_table1")
    classifier, segmenter = data["rows"]["decouplednet_5"]["seeds"][0]["stages"]
    assert (classifier["mode"], segmenter["mode"]) == ("clf_only", "seg_only")
    # Stage 2 restores (and freezes) the stage-1 classifier of the same row.
    assert segmenter["config"]["train"]["init_encoder_from"] == classifier["run_dir"]
    assert segmenter["config"]["decoupled"]["strong_per_class"] == 5
    assert classifier["config"]["decoupled"]["strong_per_class"] == 0  # every image's labels
    str_classifier = data["rows"]["decouplednet_str_5"]["seeds"][0]["stages"][0]
    assert str_classifier["config"]["decoupled"]["strong_per_class"] == 5  # -Str: strong only
    (deconv,) = data["rows"]["decouplednet_deconvnet_5"]["seeds"][0]["stages"]
    assert deconv["config"]["method"] == "deconvnet" and "segmentation" in deconv["metrics"]
    for number in ("53.1", "32.7", "15.3"):  # the paper's numbers for the three rows
        assert number in md
    # Stage 1's image-label mAP is reported beside the segmentation numbers.
    assert "classifier mAP (stage 1)" in md and "mIoU given true classes" in md
    assert "segmentation_true_classes" in segmenter["metrics"]  # the diagnostic
    assert "segmentation_true_classes" not in deconv["metrics"]  # DeconvNet segments all
    stage1_map = classifier["metrics"]["image_labels"]["map"]
    summary = data["rows"]["decouplednet_5"]["summary"]
    assert summary["classifier_map"]["mean"] == pytest.approx(stage1_map)
    assert "classifier_map" not in data["rows"]["decouplednet_deconvnet_5"]["summary"] or \
        data["rows"]["decouplednet_deconvnet_5"]["summary"]["classifier_map"]["mean"] is None
    miou = {n: r["summary"]["miou"]["mean"] for n, r in data["rows"].items() if n in DECOUPLED_ROWS}
    checked = [c for c in data["claims"] if c["a"] in miou and c["b"] in miou]
    assert len(checked) == 3
    for claim in checked:
        expected = "supported" if miou[claim["a"]] > miou[claim["b"]] else "not supported"
        assert claim["verdict"] == expected, claim


@pytest.mark.slow  # ~20-30 s; the runner's suites are covered by table1/table3/decouplednet rows
def test_decouplednet_suite_runs_on_a_voc_set_without_graded_data(tmp_path):
    from data_pipelines.synthetic_voc import generate_voc_dataset

    # 5 strong images per class of 20 classes need >= 100 training images.
    root = generate_voc_dataset(str(tmp_path / "voc"), num_train=100, num_val=12,
                                image_size=36, progress=False)["root"]
    data = real_data("eyepacs", "", "", "voc", root,
                     os.path.join(root, "ImageSets", "Segmentation", "val.txt"),
                     needs_graded=False)
    out = str(tmp_path / "runs")
    rows = ("decouplednet_5", "decouplednet_deconvnet_5")
    run_suites("decouplednet_table1", Runner(out, "tiny", data, [0], steps=STEPS,
                                             log=lambda line: None), rows=rows)
    result, md = _read(out, "decouplednet_table1")
    classifier, segmenter = result["rows"]["decouplednet_5"]["seeds"][0]["stages"]
    assert classifier["config"]["data"]["class_names"][1] == "aeroplane"
    assert classifier["metrics"]["image_labels"]["num_images"] == 12  # VOC val images
    assert set(classifier["metrics"]["image_labels"]["per_class_ap"]) == set(
        classifier["config"]["data"]["class_names"][1:])
    for stages in (segmenter, result["rows"]["decouplednet_deconvnet_5"]["seeds"][0]["stages"][0]):
        per_class = stages["metrics"]["segmentation"]["iou"]
        assert len(per_class) == 21 and "tvmonitor" in per_class
    assert "53.1" in md and "15.3" in md


@pytest.mark.slow  # ~20-30 s; the runner's suites are covered by table1/table3/decouplednet rows
def test_partial_random_label_suite_end_to_end(table1, tiny_data, out_dir):
    result = run_suites("ablation_labels", Runner(out_dir, "tiny", tiny_data, [0], steps=STEPS,
                                                  log=lambda line: None))["ablation_labels"]
    fractions = {}
    for row in SUITES["ablation_labels"].rows:
        (seed,) = result["rows"][row]["seeds"]
        assert seed["status"] == "ok", (row, seed)
        fractions[row] = seed["stages"][-1]["config"]["data"]["clf_true_label_fraction"]
    assert fractions == {"ablation_labels_0": 0.0, "ablation_labels_20": 0.2, "jointseg": 1.0}
    # jointseg was trained by the table1 fixture in this out_dir: reused, not retrained.
    assert result["rows"]["jointseg"]["seeds"][0]["stages"][0]["action"] == "finished earlier"
    assert {c["verdict"] for c in result["claims"]} <= {"supported", "not supported"}


@pytest.mark.slow
def test_every_suite_runs_end_to_end_at_tiny_scale(tiny_data, tmp_path):
    results = run_suites("all", Runner(str(tmp_path), "tiny", tiny_data, [0], steps=STEPS,
                                       log=lambda line: None))
    assert set(results) == set(SUITES)
    for name, result in results.items():
        assert os.path.isfile(tmp_path / name / "results.md")
        for row in SUITES[name].rows:
            assert [s["status"] for s in result["rows"][row]["seeds"]] == ["ok"], (name, row)
        for claim in result["claims"]:
            assert claim["verdict"] in {"supported", "not supported", "not evaluated"}, claim


@pytest.mark.slow
def test_every_suite_runs_with_two_seeds(tiny_data, tmp_path):
    results = run_suites("all", Runner(str(tmp_path), "tiny", tiny_data, [0, 1], steps=1,
                                       log=lambda line: None))
    for name, result in results.items():
        for row in SUITES[name].rows:
            assert [s["status"] for s in result["rows"][row]["seeds"]] == ["ok", "ok"], (name, row)
            assert result["rows"][row]["summary"]["miou"]["n"] in (0, 2)
