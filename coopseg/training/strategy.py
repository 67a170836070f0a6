"""``run.strategy`` -> a ``tf.distribute.Strategy``, and who writes the run's files.

``default`` (one device), ``mirrored`` (the GPUs of this machine), ``multi_worker``
(the hosts in ``TF_CONFIG``) or ``tpu`` (``make_strategy``). Every worker runs the whole
program, but only the chief's files land in ``model_dir`` (``worker_dir``); commands
and what each option does: docs/speed.md.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf

from coopseg.config import STRATEGIES, ConfigError

_TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                      '"task": {"type": "worker", "index": 0}}\'')
# Environment variables through which TPUClusterResolver finds a TPU without a name.
_TPU_ENV = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS", "TPU_CONFIG")


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy ``name`` (one of ``coopseg.config.STRATEGIES``); ConfigError if it
    cannot be set up here (unknown name, bad ``TF_CONFIG``, no TPU).

    - ``default``: no distribution (``tf.distribute.get_strategy()``), one device.
    - ``mirrored``: synchronous data parallelism on one machine, one replica per visible
      GPU; without GPUs, one per logical CPU device if there are several, else the CPU.
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the hosts named in the
      ``TF_CONFIG`` environment variable (every host runs the same command). It must be
      created before TensorFlow runs any op in the process.
    - ``tpu``: ``TPUStrategy`` on the TPU named by ``TPU_NAME`` (``local`` on a TPU VM).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored()
    if name == "multi_worker":
        parse_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu()
    raise ConfigError(f"run.strategy={name!r}; choose one of {STRATEGIES}")


def _mirrored() -> tf.distribute.MirroredStrategy:
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()  # every visible GPU
    # No GPU: several logical CPU devices (tests split the CPU in two) or the CPU.
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def _tpu() -> tf.distribute.TPUStrategy:
    # Checked first: with none of these set the resolver has nothing to connect to,
    # and a clear message beats its stack trace.
    if not any(os.environ.get(k) for k in _TPU_ENV):
        raise ConfigError("run.strategy=tpu but no TPU is configured: set TPU_NAME to the "
                          "TPU's name or grpc:// address (TPU_NAME=local on a TPU VM)")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        raise ConfigError(f"run.strategy=tpu: cannot reach the TPU ({err})") from err
    return tf.distribute.TPUStrategy(resolver)


def parse_tf_config(raw: Optional[str]) -> dict:
    """Validate ``TF_CONFIG`` for a multi-worker run; returns it parsed."""
    if not raw:
        raise ConfigError("run.strategy=multi_worker needs the TF_CONFIG environment "
                          f"variable on every host, e.g. {_TF_CONFIG_EXAMPLE} (index 1 on the "
                          "second host)")
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({err}): {raw!r}") from err
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ConfigError(f"TF_CONFIG needs a cluster with a 'worker' (or 'chief') list of "
                          f"host:port addresses, e.g. {_TF_CONFIG_EXAMPLE}; got {raw!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ConfigError(f"TF_CONFIG needs task: {{'type': ..., 'index': ...}} naming this "
                          f"host; got {raw!r}")
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not isinstance(task["index"], int) \
            or not 0 <= task["index"] < len(members):
        raise ConfigError(f"TF_CONFIG task {task} is not in the cluster {cluster}")
    return tf_config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker run: the chief is
    task ``chief``, or ``worker`` 0 when the cluster has no chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None or task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes run files: ``model_dir`` on the chief, a fresh temporary
    directory elsewhere (remove it with ``remove_worker_dir``).

    Every worker of a multi-worker run executes the same program, including checkpoint
    saves and summaries (they may read sync-on-read variables such as BatchNorm moving
    statistics, which is a collective every worker must join), but only the chief's
    files land in ``model_dir``; the others write here, and the directory is deleted at
    the end (the recipe of TensorFlow's multi-worker guide).
    """
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return tempfile.mkdtemp(prefix=f"coopseg-{resolver.task_type}{resolver.task_id}-")


def remove_worker_dir(path: str, model_dir: str) -> None:
    """Delete a non-chief worker's directory; never ``model_dir`` itself."""
    if os.path.abspath(path) != os.path.abspath(model_dir):
        shutil.rmtree(path, ignore_errors=True)
