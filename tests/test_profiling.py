"""--profile_steps writes a TensorBoard profiler trace, and the step never retraces."""
import glob
import os

import pytest

from coopseg.config import ConfigError
from coopseg.models.registry import build_system
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.tasks import build_inputs
from data_pipelines.synthetic import use_synthetic_data
from experiments.scales import experiment


def test_profiled_steps_leave_a_trace_and_the_step_traces_once(tmp_path):
    model_dir = str(tmp_path / "run")
    # A one-level model at 32 px: what is tested is the loop, not the model.
    cfg = experiment("tiny", model={"input_size": 32, "encoder_filters": (8,),
                                    "encoder_blocks": (1,)},
                     data={"resize_size": 36},
                     train={"steps": 6, "eval_batches": 1, "seg_class_weighting": "none"},
                     run={"model_dir": model_dir, "log_every": 1, "eval_every": 100,
                          "checkpoint_every": 100, "image_summaries": 0,
                          "profile_steps": "2,3"})
    use_synthetic_data(cfg, str(tmp_path / "data"), "tiny")
    cfg.validate()
    system = build_system(cfg)
    trainer = CooperativeTrainer(cfg, system)
    trainer.fit(build_inputs(cfg))
    # Batches from the pipeline have fixed shapes: one trace serves all 6 steps.
    assert trainer.step_fn._step.experimental_get_tracing_count() == 1
    traces = glob.glob(os.path.join(model_dir, "logs", "profile", "plugins", "profile",
                                    "*", "*.xplane.pb"))
    assert len(traces) == 1, traces
    assert os.path.getsize(traces[0]) > 0


@pytest.mark.parametrize("value", ["3", "a,b", "0,2", "4,2"])
def test_bad_profile_steps_are_config_errors(value):
    cfg = experiment("tiny", run={"profile_steps": value})
    with pytest.raises(ConfigError, match="profile_steps"):
        cfg.validate()
