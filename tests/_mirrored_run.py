"""Subprocess of tests/test_distribute.py: mirrored (2 logical CPUs) vs one device.

Run as ``python tests/_mirrored_run.py OUT.json``. The CPU is split into two logical
devices, which must happen before TensorFlow initialises its devices, hence a
process of its own. From the same initial weights and the same global batches, N
joint steps of the tiny JointSeg run under the default strategy and under
``mirrored``; OUT.json gets the max weight differences for each variant:

- ``sync``: sync BN on both sides (the equivalence the test asserts);
- ``plain``: per-replica BN statistics (expected to differ);
- ``wrong_scale``: sync BN, but each agent's loss divided by the per-replica batch
  instead of the global one (gradients twice too large: expected to differ).

Each variant also records the logged ``*_grad_norm`` of every step (``grad_norms``):
with sync BN they must equal one device's, the norm of the global-batch gradient.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from coopseg.models.registry import build_system  # noqa: E402
from coopseg.training.loop import CooperativeTrainer  # noqa: E402
from coopseg.training.strategy import make_strategy  # noqa: E402
from experiments.scales import experiment  # noqa: E402

STEPS = 3


def _config(sync: bool, model_dir: str):
    # The tiny JointSeg cut to two levels at 32 px: tracing a two-replica step with
    # sync BN is what costs time. Global batches: 4 graded images and 2 masks, split
    # 2 + 1 per replica.
    cfg = experiment("tiny", model=dict(sync_batch_norm=sync, input_size=32,
                                        encoder_filters=(8, 16), encoder_blocks=(1, 1)),
                     train=dict(mode="joint", seg_class_weighting="none"),
                     run=dict(model_dir=model_dir))
    return cfg.validate()


def _batches(cfg, steps: int):
    rng = np.random.default_rng(0)
    s, k = cfg.model.input_size, cfg.model.num_seg_classes
    nc, ns = cfg.train.clf_agent().batch_size, cfg.train.seg.batch_size
    out = []
    for _ in range(steps):
        # Per-image offsets and scales so the two replicas' halves have clearly
        # different BN statistics (what sync BN must reconcile).
        clf_x = rng.normal(size=(nc, s, s, 3)) * rng.uniform(0.5, 2, (nc, 1, 1, 1)) \
            + rng.normal(size=(nc, 1, 1, 1))
        seg_x = rng.normal(size=(ns, s, s, 3)) * rng.uniform(0.5, 2, (ns, 1, 1, 1)) \
            + rng.normal(size=(ns, 1, 1, 1))
        out.append(((clf_x.astype("float32"), rng.integers(0, 5, nc).astype("int32")),
                    (seg_x.astype("float32"), rng.integers(0, k, (ns, s, s)).astype("int32"))))
    return out


def _split(strategy, batch):
    """Replica i gets the i-th contiguous share of the global batch (what
    ``experimental_distribute_dataset`` does, without building an iterator)."""
    n = strategy.num_replicas_in_sync

    def share(ctx):
        i = ctx.replica_id_in_sync_group
        return tuple(tf.constant(np.array_split(x, n)[i]) for x in batch)

    return strategy.experimental_distribute_values_from_function(share)


def _weights(system) -> dict:
    return {f"{name}/{v.name}": v.numpy() for name, part in system.parts.items()
            for v in part.weights}


def _run(strategy, cfg, init: dict, batches, wrong_scale: bool = False):
    with strategy.scope():
        system = build_system(cfg)
        for name, part in system.parts.items():
            for v in part.weights:
                v.assign(init[f"{name}/{v.name}"])
        trainer = CooperativeTrainer(cfg, system, strategy)
    if wrong_scale:
        for agent in trainer.agents:  # read at trace time: the per-replica batch
            agent.batch_size //= strategy.num_replicas_in_sync
    replicas_equal = True
    grad_norms = []
    for clf, seg in batches:
        if strategy.num_replicas_in_sync > 1:
            clf, seg = _split(strategy, clf), _split(strategy, seg)
        out = trainer.step_fn(clf, seg)
        grad_norms.append({k: float(v) for k, v in out.items() if k.endswith("grad_norm")})
    for part in system.parts.values():
        for v in part.weights:
            local = [x.numpy() for x in strategy.experimental_local_results(v)]
            replicas_equal &= all(np.array_equal(local[0], x) for x in local[1:])
    return _weights(system), replicas_equal, grad_norms


def _max_diff(a: dict, b: dict) -> tuple:
    worst = max(a, key=lambda k: float(np.max(np.abs(a[k] - b[k]))))
    return float(np.max(np.abs(a[worst] - b[worst]))), worst


def _compare(dist: dict, single: dict, init: dict, trainable: set) -> dict:
    """Max |difference| over all weights (BN moving statistics included), and the
    global norm of the trainable weights' difference over that of their update."""
    diff, where = _max_diff(dist, single)
    d = np.sqrt(sum(np.sum((dist[k] - single[k]) ** 2) for k in trainable))
    u = np.sqrt(sum(np.sum((single[k] - init[k]) ** 2) for k in trainable))
    return {"max_abs_diff": diff, "where": where,
            "max_abs_update": _max_diff(single, init)[0],
            "trainable_diff_over_update": float(d / u)}


def name_of(sync: bool) -> str:
    return "sync" if sync else "plain"


def main(out_path: str) -> None:
    t0 = time.perf_counter()
    mirrored = make_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
    default = make_strategy("default")
    result = {"replicas": mirrored.num_replicas_in_sync}
    for sync in (True, False):
        tf.keras.utils.set_random_seed(0)
        cfg = _config(sync, os.path.join(os.path.dirname(out_path), f"run_{sync}"))
        variants = [("sync", False), ("wrong_scale", True)] if sync else [("plain", False)]
        with default.scope():
            system = build_system(cfg)
            init = _weights(system)
            trainable = {f"{n}/{v.name}" for n, p in system.parts.items()
                         for v in p.trainable_weights}
        batches = _batches(cfg, STEPS)
        single, _, single_norms = _run(default, cfg, init, batches)
        result[f"single_{name_of(sync)}_grad_norms"] = single_norms
        for name, wrong in variants:
            t = time.perf_counter()
            dist, replicas_equal, norms = _run(mirrored, cfg, init, batches, wrong_scale=wrong)
            result[name] = dict(_compare(dist, single, init, trainable),
                                replicas_equal=bool(replicas_equal), grad_norms=norms,
                                seconds=time.perf_counter() - t)
    result["seconds"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
