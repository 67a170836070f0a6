"""The installed console scripts, run as a user runs them: real processes, real signals.

These call the entry points pip generated (``coopseg-train``, ``coopseg-convert``, ...)
next to the test's Python, not ``python -m``, so a packaging break (a console script
pointing at a moved function) fails here.
"""
import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from coopseg.runs.lock import LOCK_NAME
from coopseg.training.schedules import PolynomialDecayWithWarmup
from experiments.scales import experiment

BIN = os.path.dirname(sys.executable)
# Every console script of setup.py: its module and a flag only that program defines.
PROGRAMS = {"coopseg-train": ("coopseg.cli.train", "--experiment"),
            "coopseg-evaluate": ("coopseg.cli.evaluate", "--report"),
            "coopseg-export": ("coopseg.cli.export", "--export_dir"),
            "coopseg-predict": ("coopseg.cli.predict", "--tta"),
            "coopseg-convert": ("coopseg.cli.convert", "--crop_retina"),
            "coopseg-synth": ("data_pipelines.synthetic", "--out_dir"),
            "coopseg-synth-voc": ("data_pipelines.synthetic_voc", "--out")}
# A TensorFlow C++ log line: "2026-12-03 09:21:45.846293: E external/...".
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPP_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ", re.M)


def _script(name: str) -> str:
    path = os.path.join(BIN, name)
    assert os.path.isfile(path), f"{name} is not installed next to {sys.executable}: pip install -e ."
    return path


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra)
    return env


def test_every_console_script_lists_its_own_flags_in_help():
    for name, (module, own_flag) in PROGRAMS.items():
        proc = subprocess.run([_script(name), "--help"], capture_output=True, text=True,
                              env=_env(), timeout=120)
        out = proc.stdout + proc.stderr
        # Help was asked for and given: status 0, the terminal free of TFA's warning.
        assert proc.returncode == 0 and "TensorFlow Addons" not in proc.stderr, (name, proc)
        # Boolean flags read "--[no]tta:".
        assert re.search(rf"--(\[no\])?{own_flag[2:]}:", out), (name, out[-2000:])
        assert out.startswith(f"usage: {name} [flags]\n"), (name, out[:300])
        summary = importlib.import_module(module).__doc__.splitlines()[0]
        assert summary in out, (name, out[:300])  # the program's own usage text
        assert "Try --helpfull" in out


# Runs a program's entry point in this interpreter, then says whether TensorFlow was loaded.
_LOADS_TENSORFLOW = """
import runpy, sys
sys.argv = [{prog!r}] + {args!r}
try:
    if {module!r} == "experiments.run":
        runpy.run_module("experiments.run", run_name="__main__")
    else:
        __import__({module!r}, fromlist=["run"]).run()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("EXIT", code, "TENSORFLOW", "tensorflow" in sys.modules)
"""


def test_help_and_flag_errors_answer_without_loading_tensorflow():
    """The heavy imports wait for ``main``: ``--help`` and a mistyped flag answer at
    once (TensorFlow's import alone takes seconds)."""
    programs = {name: module for name, (module, _) in PROGRAMS.items()}
    programs["python -m experiments.run"] = "experiments.run"
    for name, module in programs.items():
        for args, code in ((["--help"], "0"), (["--no_such_flag=1"], "1")):
            proc = subprocess.run(
                [sys.executable, "-c", _LOADS_TENSORFLOW.format(prog=name, args=args,
                                                                module=module)],
                capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
            assert f"EXIT {code} TENSORFLOW False" in proc.stdout, (name, args, proc)


def test_tensorflow_startup_noise_is_off_unless_the_user_asks(tmp_path):
    # A run that gets as far as main loads TensorFlow, as any user run does.
    proc = subprocess.run([_script("coopseg-evaluate"), f"--model_dir={tmp_path}"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert "not a coopseg run directory" in proc.stderr, proc.stderr[-2000:]
    assert not CPP_LOG_LINE.search(proc.stderr), proc.stderr
    # The suite runner is a program too.
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "--suite=nope"], cwd=ROOT,
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert "unknown suite 'nope'" in proc.stderr and not CPP_LOG_LINE.search(proc.stderr), \
        proc.stderr[-2000:]
    # A level the user set is respected (and then TensorFlow's own logging decides).
    code = "import os, coopseg.cli; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    for user_level, expected in ((None, "3"), ("0", "0"), ("1", "1")):
        env = _env() if user_level is None else _env(TF_CPP_MIN_LOG_LEVEL=user_level)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=60)
        assert out.stdout.strip() == expected, out


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"process ended (code {proc.returncode}) while waiting for {what}: "
                        + proc.stderr.read()[-3000:])
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _lock_pid(model_dir: str):
    try:
        with open(os.path.join(model_dir, LOCK_NAME)) as f:
            return int(re.search(r'"pid": (\d+)', f.read()).group(1))
    except (OSError, AttributeError):
        return None


def test_second_writer_is_refused_and_a_killed_run_resumes_at_its_step_and_rates(tmp_path):
    """Two real coopseg-train processes on one --model_dir, then SIGKILL between checkpoints
    and the same command again: it takes the dead run's lock over, resumes from the last
    checkpoint at that step with the schedule's learning rates, and finishes."""
    steps, every = 60, 10
    model_dir, data_dir = str(tmp_path / "run"), str(tmp_path / "data")
    command = [_script("coopseg-train"), "--experiment=demo", "--scale=tiny", f"--steps={steps}",
               f"--checkpoint_every={every}", f"--eval_every={steps}", "--noexport",
               f"--data_dir={data_dir}", f"--model_dir={model_dir}"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())
    try:
        _wait_for(lambda: _lock_pid(model_dir) == first.pid, 120, "the first run's lock", first)

        t0 = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=120)
        errors = [line for line in second.stderr.splitlines() if "error:" in line]
        assert second.returncode != 0 and len(errors) == 1, second.stderr[-3000:]
        assert errors[0].startswith("coopseg-train: error: ")
        assert model_dir in errors[0] and f"pid {first.pid} on {socket.gethostname()}" in errors[0]
        assert time.monotonic() - t0 < 60  # refused before any data or model work
        assert first.poll() is None  # the first run was not disturbed

        index = os.path.join(model_dir, "checkpoints", "checkpoint")
        _wait_for(lambda: os.path.isfile(index), 240, "the first checkpoint", first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    killed_at = int(latest.rsplit("-", 1)[1])
    assert every <= killed_at < steps  # killed between checkpoints, before the end

    again = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stderr
    assert f"taking over the lock left by pid {first.pid}" in log, log[-3000:]
    resumed = re.search(r"Resumed at step (\d+) \(lr clf=([0-9.e-]+), seg=([0-9.e-]+)\)", log)
    assert resumed, log[-3000:]
    assert int(resumed.group(1)) == killed_at
    # Each agent's rate continues from its restored optimizer step: the schedule's value.
    tc = experiment("tiny").train
    for agent, logged in (("clf", resumed.group(2)), ("seg", resumed.group(3))):
        cfg = tc.clf_agent() if agent == "clf" else tc.seg
        schedule = PolynomialDecayWithWarmup(cfg.learning_rate, steps, cfg.end_learning_rate,
                                             cfg.decay_power, cfg.warmup_steps)
        assert float(logged) == pytest.approx(float(schedule(killed_at)), rel=2e-3), agent
    final = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert final.endswith(f"ckpt-{steps}")
    assert os.path.isfile(os.path.join(model_dir, "metrics.json"))
    assert _lock_pid(model_dir) is None  # released at the end
