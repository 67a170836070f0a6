"""Subprocess of tests/test_distribute.py: one worker of a 2-worker localhost run.

    TF_CONFIG=... python tests/_multi_worker_run.py DATA_DIR MODEL_DIR OUT.npz

Trains a cut-down tiny JointSeg (sync BN) for a few steps through the real
``coopseg.training.train.train`` under ``MultiWorkerMirroredStrategy`` and saves this
worker's local copy of every weight to OUT.npz.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from coopseg.training.strategy import make_strategy  # noqa: E402

STEPS = 6


def tiny_config(data_dir: str, model_dir: str):
    """The config both workers (and the parent test, to make the data) use."""
    from data_pipelines.synthetic import use_synthetic_data
    from experiments.scales import experiment
    cfg = experiment("tiny", model=dict(sync_batch_norm=True, input_size=32,
                                        encoder_filters=(8, 16), encoder_blocks=(1, 1)),
                     data=dict(resize_size=36, random_pad=2),
                     train=dict(steps=STEPS, eval_batches=1),
                     run=dict(strategy="multi_worker", model_dir=model_dir, log_every=3,
                              checkpoint_every=3, eval_every=STEPS))
    use_synthetic_data(cfg, data_dir, "tiny")
    return cfg.validate()


def main(data_dir: str, model_dir: str, out_path: str) -> None:
    strategy = make_strategy("multi_worker")  # before TensorFlow runs any op
    from coopseg.training.tasks import JointSegTask
    from coopseg.training.train import train

    built = []
    build_system = JointSegTask.build_system

    def capture(task, config):  # keep a handle on the system train() builds
        built.append(build_system(task, config))
        return built[-1]

    JointSegTask.build_system = capture
    out = train(tiny_config(data_dir, model_dir), export=True, strategy=strategy)
    weights = {f"{name}/{v.name}": strategy.experimental_local_results(v)[0].numpy()
               for name, part in built[0].parts.items() for v in part.weights}
    np.savez(out_path, **weights)
    print("worker done: chief" if out["is_chief"] else "worker done: non-chief",
          out["summary"], flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
