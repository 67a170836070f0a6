"""The benchmarks run end to end and return well-formed results (never checks timings).

A one-level tiny model and one round keep this quick: what is tested is the plumbing
(trainers, interleaving, pipelines, converter, statistics, tables), not the figures.
"""
import json
import os

import pytest
from absl import flags

from benchmarks import fit_vs_custom, flops, input_pipeline, scaling, step_cost
from benchmarks.common import Case, paired_ratios, quartiles, run_interleaved
from benchmarks.step_cost import describe_config

# A one-level model traces in a few seconds instead of ~10 (the step's size is irrelevant).
TINY = step_cost.StepOptions(scale="tiny", input_size=32, warmup_steps=1,
                             overrides=("model.encoder_filters=8", "model.encoder_blocks=1"))
QUARTILE_KEYS = {"median", "q1", "q3", "iqr"}


def _check_stats(stats, rounds, images_per_op):
    assert QUARTILE_KEYS <= set(stats["ms"]) and QUARTILE_KEYS <= set(stats["cpu_ms"])
    assert len(stats["samples_ms"]) == rounds
    assert stats["images_per_op"] == images_per_op
    assert stats["images_per_s"] > 0


def test_interleaving_rotates_cases_and_runs_setup_and_teardown():
    calls = []
    cases = [Case(name, lambda n=name: calls.append(n), ops=1, images=1,
                  setup=lambda n=name: calls.append(f"setup {n}"),
                  teardown=lambda n=name: calls.append(f"teardown {n}"))
             for name in ("a", "b", "c")]
    samples = run_interleaved(cases, rounds=2)
    for seconds in (samples.wall, samples.cpu):
        assert {name: len(s) for name, s in seconds.items()} == {"a": 2, "b": 2, "c": 2}
    timed = [c for c in calls if " " not in c]
    assert timed == ["a", "b", "c", "b", "c", "a"]
    assert calls[:3] == ["setup a", "a", "teardown a"]


def test_quartiles_and_paired_ratios():
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0,
                                                    "iqr": 2.0}
    ratios = paired_ratios([2.0, 6.0], [1.0, 1.0], [1.0, 2.0])
    assert ratios["samples"] == [1.0, 2.0]
    assert ratios["median"] == 1.5


def test_step_flags_map_to_options():
    fv = flags.FlagValues()
    step_cost.define_step_flags(fv)
    fv(["step_cost", "--scale=tiny", "--input_size=32", "--batch_ratio=3",
        "--set=model.pag_mode=none", "--rounds=2"])
    options = step_cost.step_options_from_flags(fv)
    assert options == step_cost.StepOptions(scale="tiny", input_size=32, batch_ratio=3,
                                            overrides=("model.pag_mode=none",))
    config = options.config()
    assert config.model.pag_mode == "none"
    assert config.train.clf_agent().batch_size == 3 * config.train.seg.batch_size


def test_step_cost_returns_all_modes_and_the_ratio(tmp_path):
    result = step_cost.measure_step_cost(TINY, rounds=1, steps_per_round=1)
    cfg = result["config"]
    assert cfg["input_size"] == 32 and cfg["scale"] == "tiny"
    n_clf, n_seg = cfg["clf_batch"], cfg["seg_batch"]
    assert n_clf == cfg["batch_ratio"] * n_seg
    expected = {"joint": n_clf + n_seg, "seg_only": n_seg, "clf_only": n_clf}
    assert set(result["steps"]) == set(expected)
    for mode, images in expected.items():
        _check_stats(result["steps"][mode], 1, images)
    for ratio in (result["ratio"], result["cpu_ratio"]):
        assert len(ratio["samples"]) == 1 and ratio["median"] > 0
    assert result["images_per_s"] == result["steps"]["joint"]["images_per_s"]
    assert isinstance(result["all_finite"], bool)
    table = step_cost.format_step_cost(result)
    assert "joint / (seg_only + clf_only)" in table
    assert all(mode in table for mode in expected)
    out = tmp_path / "result.json"
    step_cost.write_json(str(out), result)
    assert json.loads(out.read_text())["config"]["num_params"] == cfg["num_params"]


@pytest.mark.slow  # ~12 s: builds and times four pipelines; step_cost's smoke covers the timing core
def test_input_pipeline_times_every_pipeline_next_to_the_step(tmp_path):
    data = input_pipeline.DataOptions(work_dir=str(tmp_path), num_graded=8, num_masks=4)
    result = input_pipeline.measure_input_pipeline(TINY, data, rounds=1, steps_per_round=1)
    cfg = result["config"]
    n_clf, n_seg = cfg["clf_batch"], cfg["seg_batch"]
    assert (cfg["num_graded"], cfg["num_masks"]) == (8, 4)
    _check_stats(result["step"], 1, n_clf + n_seg)
    names = {f"{kind}/{source}{suffix}" for kind in ("graded", "masks")
             for source in ("jpeg", "tfrecord") for suffix in ("", "+affine")}
    assert set(result["pipelines"]) == names
    for name, entry in result["pipelines"].items():
        assert name == f"{entry['kind']}/{entry['source']}{'+affine' if entry['affine'] else ''}"
        _check_stats(entry, 1, n_clf if entry["kind"] == "graded" else n_seg)
        assert len(entry["lead"]["samples"]) == 1 and len(entry["cpu_lead"]["samples"]) == 1
    assert set(result["both"]) == {"jpeg", "jpeg+affine", "tfrecord", "tfrecord+affine"}
    assert result["min_lead"] == min(b["lead"]["median"] for b in result["both"].values())
    assert set(result["fed"]) == {"jpeg", "tfrecord"}
    for entry in result["fed"].values():
        _check_stats(entry, 1, n_clf + n_seg)
        assert len(entry["vs_tensors"]["samples"]) == len(entry["cpu_vs_tensors"]["samples"]) == 1
    for root in (cfg["graded_tfrecords"], cfg["masks_tfrecords"]):
        assert os.path.exists(os.path.join(root, "manifest.json"))
    table = input_pipeline.format_input_pipeline(result)
    assert "lead the joint step by at least" in table and "graded/tfrecord+affine" in table


def test_an_existing_synthetic_set_is_reused_as_made(tmp_path):
    config = TINY.config()
    made = input_pipeline.synthetic_set(
        input_pipeline.DataOptions(work_dir=str(tmp_path), num_graded=4, num_masks=2),
        config, "tiny")
    manifest = os.path.join(made["data_dir"], "synthetic.json")
    stamp = os.stat(manifest).st_mtime_ns
    # Other counts asked for, but a given data_dir is used as it is, not regenerated.
    again = input_pipeline.synthetic_set(
        input_pipeline.DataOptions(data_dir=made["data_dir"], num_graded=40), config, "tiny")
    assert again["counts"]["graded_train"] == 4
    assert os.stat(manifest).st_mtime_ns == stamp


def test_unknown_scale_is_a_config_error():
    from coopseg.config import ConfigError
    with pytest.raises(ConfigError, match="scale"):
        step_cost.StepOptions(scale="huge").config()


def test_fit_vs_custom_times_both_loops_on_the_seg_batch():
    result = fit_vs_custom.measure_fit_vs_custom(TINY, rounds=1, steps_per_round=1)
    n_seg = result["config"]["seg_batch"]
    assert set(result["steps"]) == {"custom_step", "keras_fit"}
    for stats in result["steps"].values():
        _check_stats(stats, 1, n_seg)
    for ratio in (result["ratio"], result["cpu_ratio"]):
        assert len(ratio["samples"]) == 1 and ratio["median"] > 0
    assert isinstance(result["keras_loss_falls"], bool)
    assert "keras_fit / custom_step" in fit_vs_custom.format_fit_vs_custom(result)


def test_flops_counts_the_step_and_the_reference_conv():
    conv = flops.ConvOptions(batch=1, size=16, channels=8, calls=1)
    result = flops.measure_flops(TINY, conv, rounds=1, steps_per_round=1)
    # The profiler counts 2 FLOPs per multiply-add, as the analytic formula does.
    assert result["conv_flops"] == result["conv_flops_analytic"] == 2 * 16 * 16 * 8 * 8 * 9
    fwd = result["forward_flops"]
    assert fwd["clf"] > 0 and fwd["seg"] > 0
    assert result["step_flops"] == 3 * (fwd["clf"] + fwd["seg"])
    assert set(result["steps"]) == {"joint", "conv_reference"}
    assert result["achieved_flops_per_s"] > 0 and result["practical_flops_per_s"] > 0
    assert len(result["fraction"]["samples"]) == 1 and result["fraction"]["median"] > 0
    assert "3 x forward" in flops.format_flops(result)


def test_forward_flops_grow_with_the_batch():
    import tensorflow as tf
    model = tf.keras.Sequential([tf.keras.Input((8, 8, 3)), tf.keras.layers.Conv2D(
        4, 3, padding="same", use_bias=False)])
    one = flops.forward_flops(model, 1)
    assert one == 2 * 8 * 8 * 3 * 4 * 9
    assert flops.forward_flops(model, 3) == 3 * one


@pytest.mark.slow  # ~10 s: traces several step shapes; step_cost's smoke covers one
def test_scaling_sweeps_size_batch_and_jit():
    settings = scaling.sweep((32, 40), (1, 2), compare_jit=True)
    assert [s.name for s in settings] == ["32px/seg1", "40px/seg1", "32px/seg2", "32px/seg1/jit"]
    result = scaling.measure_scaling(TINY, (32,), (1, 2), compare_jit=False, rounds=1,
                                     steps_per_round=1)
    rows = result["rows"]
    assert [r["name"] for r in rows] == ["32px/seg1", "32px/seg2"]
    assert rows[0]["step_ratio"]["median"] == pytest.approx(1.0)
    assert [r["clf_batch"] for r in rows] == [r["seg_batch"] * TINY.config().train.batch_ratio
                                             for r in rows]
    for r in rows:
        _check_stats(r["stats"], 1, r["clf_batch"] + r["seg_batch"])
    # Per image = per step x (base images / these images).
    assert rows[1]["image_ratio"]["median"] == pytest.approx(
        rows[1]["step_ratio"]["median"] / 2)
    assert result["jit_vs_off"] is None
    assert "per image vs base" in scaling.format_scaling(result)


def test_step_cost_builds_under_the_configured_precision():
    import dataclasses

    import tensorflow as tf
    options = dataclasses.replace(
        TINY, overrides=TINY.overrides + ("train.mixed_precision=mixed_bfloat16",))
    bench = step_cost.build_step_bench(options.config(), modes=("seg_only",))
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    encoder = bench.trainers["seg_only"].seg_agent.model.get_layer("encoder")
    assert encoder.get_layer("encoder_stem_conv").compute_dtype == "bfloat16"
    step_cost.wait_for(bench.step("seg_only"))
    assert bench.all_finite()
    assert "mixed_bfloat16" in step_cost.describe_step_setting(describe_config(bench, options))


def test_predict_throughput_times_every_case_against_predict():
    from benchmarks import predict_throughput
    result = predict_throughput.measure_predict(
        "tiny", photos=2, photo_size=64, batch_size=2, rounds=1,
        overrides=("model.input_size=32", "model.encoder_filters=8", "model.encoder_blocks=1"))
    names = [row["name"] for row in result["rows"]]
    assert names == ["predict", "predict_no_overlays", "predict_tta", "serving_bytes",
                     "network_only"]
    assert result["rows"][0]["wall_ratio"]["median"] == 1.0
    for row in result["rows"]:
        _check_stats(row["stats"], rounds=1, images_per_op=2)
    assert "serving_bytes" in predict_throughput.format_predict(result)


@pytest.mark.slow  # ~15 s: trains two cases; op determinism itself: tests/test_reproducibility.py
def test_determinism_benchmark_restores_the_process_state(tmp_path):
    from benchmarks import determinism
    from coopseg.training.reproducibility import op_determinism_enabled

    result = determinism.measure_determinism(
        "tiny", rounds=1, steps_per_round=1, warmup_steps=1, data_dir=str(tmp_path / "data"),
        model={"input_size": 32, "encoder_filters": (8,), "encoder_blocks": (1,)})
    assert not op_determinism_enabled()  # it switched determinism on only for its case
    assert set(result["steps"]) == {"default", "deterministic"}
    for stats in result["steps"].values():
        _check_stats(stats, rounds=1, images_per_op=6)
    assert QUARTILE_KEYS <= set(result["ratio"]) and len(result["ratio"]["samples"]) == 1
    assert isinstance(result["same_losses"], bool)
    assert "deterministic / default" in determinism.format_determinism(result)


@pytest.mark.slow  # five step functions to trace (~20-40 s); the step_cost smoke above is fast
def test_cooperation_cost_times_every_option_against_the_papers_step():
    result = step_cost.measure_cooperation_cost(TINY, rounds=1, steps_per_round=1)
    names = {step_cost.PAPER_JOINT, *step_cost.COOPERATION_OPTIONS}
    assert set(result["steps"]) == names
    images = result["config"]["clf_batch"] + result["config"]["seg_batch"]
    for stats in result["steps"].values():
        _check_stats(stats, rounds=1, images_per_op=images)
    for ratios in (result["ratio"], result["cpu_ratio"]):
        assert set(ratios) == set(step_cost.COOPERATION_OPTIONS)
        assert all(r["median"] > 0 and len(r["samples"]) == 1 for r in ratios.values())
    table = step_cost.format_cooperation_cost(result)
    assert all(f"{name} / {step_cost.PAPER_JOINT}" in table
               for name in step_cost.COOPERATION_OPTIONS)


def test_sliding_window_benchmark_times_every_size_and_tile_batching():
    from benchmarks import sliding_window
    result = sliding_window.measure("tiny", sizes=(32, 64), rounds=1,
                                    overrides=("model.input_size=32", "model.encoder_filters=8",
                                               "model.encoder_blocks=1"))
    names = [row["case"] for row in result["rows"]]
    assert result["tile"] == 32 and names == ["32px", "64px", "64px x4/call", "64px x9/call"]
    assert [row["tiles"] for row in result["rows"]] == [1, 9, 9, 9]
    assert result["rows"][0]["time_ratio"] == 1.0 and result["rows"][1]["pixel_ratio"] == 4.0
    assert all(row["seconds_per_photo"] > 0 for row in result["rows"])
