"""tf.distribute: strategy set-up and its errors, sync BN wiring, and (slow, in
subprocesses) mirrored == single-device training and a 2-worker localhost run."""
import json
import os
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.models.jointseg.network import build_jointseg
from coopseg.models.registry import build_system
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.strategy import is_chief, make_strategy, parse_tf_config
from experiments.scales import experiment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="choose one of"):
        make_strategy("horovod")


@pytest.mark.parametrize("raw,match", [
    (None, "needs the TF_CONFIG"),
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "needs a cluster"),
    ('{"cluster": {"worker": ["localhost:1"]}}', "needs task"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
     "not in the cluster"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}',
     "not in the cluster"),
])
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, raw, match):
    if raw is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(ConfigError, match=match):
        make_strategy("multi_worker")


def test_valid_tf_config_parses():
    raw = json.dumps({"cluster": {"worker": ["h1:1", "h2:1"]},
                      "task": {"type": "worker", "index": 1}})
    assert parse_tf_config(raw)["task"]["index"] == 1


def test_tpu_without_a_tpu_is_a_config_error(monkeypatch):
    for key in ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="no TPU"):
        make_strategy("tpu")


def _device_ids(names):
    """(type, index) of device names, whatever their job/replica/task prefix."""
    specs = [tf.DeviceSpec.from_string(n) for n in names]
    return sorted((s.device_type, s.device_index) for s in specs)


def test_default_and_single_machine_strategies_are_chief():
    default = make_strategy("default")
    # No distribution whatever the hardware: the process-wide default, one replica.
    assert default is tf.distribute.get_strategy() and is_chief(default)
    assert default.num_replicas_in_sync == 1
    mirrored = make_strategy("mirrored")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    # strategy.py: one replica per visible GPU; only without GPUs one per logical CPU
    # device (one here unless a test split the CPU). So the expectation follows the
    # machine, and the test holds on a GPU host as well as on this CPU-only one.
    gpus = tf.config.list_logical_devices("GPU")
    expected = gpus or tf.config.list_logical_devices("CPU")
    assert mirrored.num_replicas_in_sync == len(expected) >= 1
    assert _device_ids(mirrored.extended.worker_devices) == _device_ids(d.name for d in expected)
    assert is_chief(mirrored)


@pytest.mark.parametrize("sync", [False, True])
def test_sync_batch_norm_reaches_every_jointseg_bn_layer(tiny_model_config, sync):
    tiny_model_config.sync_batch_norm = sync
    models = build_jointseg(tiny_model_config)
    bns = [layer for m in (models.encoder, models.classifier, models.decoder)
           for layer in m.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(bns) > 20
    assert {layer.synchronized for layer in bns} == {sync}


def test_global_batch_must_split_evenly_over_replicas(tmp_path):
    cfg = experiment("tiny", run=dict(model_dir=str(tmp_path))).validate()
    trainer = CooperativeTrainer(cfg, build_system(cfg))
    trainer._check_batch_split()  # one replica: anything splits
    trainer.strategy = types.SimpleNamespace(num_replicas_in_sync=3)  # seg batch 2, clf 4
    with pytest.raises(ConfigError, match="multiple of 3"):
        trainer._check_batch_split()


def test_resume_under_a_mirrored_strategy(tmp_path):
    """Checkpoint a step taken under ``mirrored`` (here one CPU replica, still mirrored
    variables), then restore it into a fresh system + trainer built in the scope."""
    strategy = make_strategy("mirrored")
    cfg = experiment("tiny", model=dict(input_size=32, encoder_filters=(8, 16),
                                        encoder_blocks=(1, 1)),
                     train=dict(mode="seg_only"), run=dict(model_dir=str(tmp_path))).validate()
    rng = np.random.default_rng(0)
    seg = (tf.constant(rng.normal(size=(2, 32, 32, 3)), tf.float32),
           tf.constant(rng.integers(0, 7, (2, 32, 32)), tf.int32))
    with strategy.scope():
        system = build_system(cfg)
        trainer = CooperativeTrainer(cfg, system, strategy)
    assert trainer.is_chief and trainer.output_dir == str(tmp_path)
    trainer.step_fn(None, seg)
    trainer.global_step.assign(1)
    trainer.save()
    saved = [v.numpy() for v in system.seg_model.weights]
    with strategy.scope():
        system2 = build_system(cfg)
        trainer2 = CooperativeTrainer(cfg, system2, strategy)
    assert trainer2.restore_or_initialize() == 1
    assert int(trainer2.seg_agent.optimizer.iterations.numpy()) == 1
    for a, b in zip(saved, system2.seg_model.weights):
        assert isinstance(b, tf.distribute.DistributedValues)
        np.testing.assert_array_equal(a, b.numpy())


def _run(args, env=None, timeout=900):
    env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable] + args, env=env, timeout=timeout,
                          capture_output=True, text=True)


def test_train_cli_strategy_flag_reaches_make_strategy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    res = subprocess.run([sys.executable, "-m", "coopseg.cli.train", "--strategy=multi_worker",
                          "--scale=tiny", f"--model_dir={tmp_path / 'run'}"],
                         env=dict(env, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3"), cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert res.returncode != 0
    assert "coopseg-train: error: run.strategy=multi_worker needs the TF_CONFIG" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_mirrored_two_replicas_equal_one_device(tmp_path):
    """3 joint steps on 2 logical CPUs == 3 steps on one device (same weights, same
    global batches) with sync BN; per-replica BN or a per-replica loss scale is not."""
    out = tmp_path / "out.json"
    t0 = time.perf_counter()
    proc = _run([os.path.join(ROOT, "tests", "_mirrored_run.py"), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    print(json.dumps(r, indent=2), f"{time.perf_counter() - t0:.0f} s")
    assert r["replicas"] == 2
    sync, plain, wrong = r["sync"], r["plain"], r["wrong_scale"]
    # Sync BN: float round-off only (measured ~1e-6 of the update, 1e-7 absolute).
    assert sync["trainable_diff_over_update"] < 1e-4, sync
    assert sync["max_abs_diff"] < 1e-4, sync
    assert sync["replicas_equal"] and wrong["replicas_equal"]
    # The contrasts: a test that could not tell these apart would prove nothing.
    assert wrong["trainable_diff_over_update"] > 0.3, wrong
    assert plain["trainable_diff_over_update"] > 0.1, plain
    assert not plain["replicas_equal"]  # per-replica BN moving statistics drift apart
    # The logged gradient norm is that of the global-batch gradient: with sync BN it
    # equals one device's (a sum of per-replica norms would not).
    for single, dist in zip(r["single_sync_grad_norms"], sync["grad_norms"]):
        assert set(single) == {"clf_grad_norm", "seg_grad_norm"}
        for key, value in single.items():
            assert dist[key] == pytest.approx(value, rel=1e-4), (key, single, dist)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_localhost_train_in_lockstep_and_only_the_chief_writes(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from _multi_worker_run import STEPS, tiny_config
    data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "run")
    tiny_config(data_dir, model_dir)  # generate the synthetic set once, before the workers
    workers = [f"localhost:{_free_port()}" for _ in range(2)]
    procs = []
    for i in range(2):
        tmp = tmp_path / f"tmp{i}"
        tmp.mkdir()
        env = {"TMPDIR": str(tmp), "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})}
        procs.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "_multi_worker_run.py"), data_dir,
             model_dir, str(tmp_path / f"w{i}.npz")], env=dict(os.environ, PYTHONPATH=ROOT, **env),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    assert "worker done: chief" in logs[0] and "worker done: non-chief" in logs[1]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert sorted(w0.files) == sorted(w1.files) and len(w0.files) > 100
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    # The chief's run directory, and nothing else: one set of checkpoints, no worker
    # directories; the non-chief's temporary directory is gone. The chief held the run
    # directory's lock and released it (the lock file stays, emptied: coopseg/runs/lock.py).
    assert sorted(os.listdir(model_dir)) == [".lock", "checkpoints", "config.json", "export",
                                             "logs", "metrics.json"]
    assert os.path.getsize(os.path.join(model_dir, ".lock")) == 0
    ckpts = sorted(f for f in os.listdir(os.path.join(model_dir, "checkpoints"))
                   if f.endswith(".index"))
    assert ckpts == [f"ckpt-{STEPS // 2}.index", f"ckpt-{STEPS}.index"]
    assert json.load(open(os.path.join(model_dir, "metrics.json")))["steps"] == STEPS
    assert os.listdir(tmp_path / "tmp1") == []
