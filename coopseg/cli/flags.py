"""absl flags shared by the CLIs: pick an experiment config, then override its fields.

Named flags cover what researchers change most; ``--set=path=value`` (repeatable)
reaches any other field, e.g. ``--set=train.seg.weight_decay=5e-4``. A flag left at
its default (None) does not touch the experiment's value.
"""
from __future__ import annotations

from typing import Dict

import json

from absl import flags, logging

from coopseg.config import (GRADIENT_BALANCE, MIXED_PRECISION_POLICIES, PAG_MODES, STRATEGIES,
                            TRAIN_MODES, ConfigError, ExperimentConfig, override,
                            scaled_warmup, to_dict, use_class_names)
from data_pipelines.datasets import (GRADED_FORMATS, MASK_FORMATS, canonical_graded_format,
                                     run_class_names)
from experiments.registry import SCALES, get_experiment, get_stages

FLAGS = flags.FLAGS

# flag name -> dotted config field it overrides
FIELD_FLAGS: Dict[str, str] = {
    "model_dir": "run.model_dir",
    "steps": "train.steps",
    "mode": "train.mode",
    "seed": "train.seed",
    "lr_ratio": "train.lr_ratio",
    "batch_ratio": "train.batch_ratio",
    "seg_learning_rate": "train.seg.learning_rate",
    "seg_batch_size": "train.seg.batch_size",
    "eval_every": "run.eval_every",
    "checkpoint_every": "run.checkpoint_every",
    "jit_compile": "run.jit_compile",
    "mixed_precision": "train.mixed_precision",
    "profile_steps": "run.profile_steps",
    "strategy": "run.strategy",
    "sync_batch_norm": "model.sync_batch_norm",
    "init_encoder_from": "train.init_encoder_from",
    "backbone_weights": "train.backbone_weights",
    "deterministic": "run.deterministic",
    "pag_mode": "model.pag_mode",
    "per_agent_batch_norm": "model.per_agent_batch_norm",
    "clf_encoder_lr_scale": "train.cooperation.clf_encoder_lr_scale",
    "gradient_balance": "train.cooperation.gradient_balance",
    "balance_target": "train.cooperation.balance_target",
    "masks_train_count": "data.masks_train_count",
    "input_size": "model.input_size",
    "graded_format": "data.graded_format",
    "graded_train": "data.graded_train",
    "graded_val": "data.graded_val",
    "masks_format": "data.masks_format",
    "masks_train": "data.masks_train",
    "masks_val": "data.masks_val",
    "clf_true_label_fraction": "data.clf_true_label_fraction",
    "affine": "data.affine",
    "skip_bad_images": "data.skip_bad_images",
    "validate_files": "data.validate_files",
    "allow_val_overlap": "data.allow_val_overlap",
}


_defined = False


def define_experiment_flags() -> None:
    """Define the experiment flags once (several CLIs share this module)."""
    global _defined
    if _defined:
        return
    _defined = True
    flags.DEFINE_string("experiment", "demo", "Experiment config in experiments/rows/. Most "
                        "flags below default to the experiment's own value: --print_config "
                        "shows every effective value.")
    flags.DEFINE_bool("print_config", False, "Print the effective config (the experiment with "
                      "every flag applied) as JSON and exit without training.")
    flags.DEFINE_enum("scale", "small", SCALES, "Size of the experiment: paper | small | tiny.")
    flags.DEFINE_multi_string("set", [], "Override any config field: --set=train.seg.momentum=0.95")
    flags.DEFINE_string("model_dir", None, "Run directory (checkpoints, logs, metrics, export).")
    flags.DEFINE_integer("steps", None, "Training steps (both agents step once per step).")
    flags.DEFINE_enum("mode", None, list(TRAIN_MODES), "Which agents train.")
    flags.DEFINE_integer("seed", None, "Seed of weight initialisation, data order and "
                         "augmentation.")
    flags.DEFINE_float("lr_ratio", None, "Classifier LR / segmentation LR (paper: 30; "
                       "small and tiny scales: 1.5).")
    flags.DEFINE_integer("batch_ratio", None, "Classifier batch / segmentation batch (paper: 32).")
    flags.DEFINE_float("seg_learning_rate", None, "Segmentation agent's initial LR.")
    flags.DEFINE_integer("seg_batch_size", None, "Segmentation agent's batch size.")
    flags.DEFINE_integer("eval_every", None, "Validate every N steps.")
    flags.DEFINE_integer("checkpoint_every", None, "Checkpoint every N steps.")
    flags.DEFINE_bool("jit_compile", None, "XLA-compile the step (slower on CPU).")
    flags.DEFINE_enum("mixed_precision", None, [p for p in MIXED_PRECISION_POLICIES if p],
                      "Keras mixed-precision policy (float32 variables and logits).")
    flags.DEFINE_string("profile_steps", None, "START,END: TensorBoard profiler trace of "
                        "these steps into <model_dir>/logs/profile (Profile tab).")
    flags.DEFINE_enum("strategy", None, list(STRATEGIES),
                      "tf.distribute strategy: default (one device) | mirrored (all GPUs of "
                      "this machine) | multi_worker (hosts in TF_CONFIG) | tpu (TPU_NAME).")
    flags.DEFINE_bool("sync_batch_norm", None, "BatchNorm statistics over all replicas "
                      "(multi-replica training then equals one device on the global batch).")
    flags.DEFINE_string("init_encoder_from", None, "The run directory this run starts from: "
                        "a trained classifier (two-step init) or DecoupledNet's stage 1.")
    flags.DEFINE_string("backbone_weights", None, "Start the backbone from a Keras ImageNet "
                        "weights file (.h5) on disk: VGG-16 (fcn8s, vgg16, decouplednet, "
                        "deconvnet), VGG-19 or InceptionV3. Nothing is downloaded.")
    flags.DEFINE_bool("deterministic", None, "TensorFlow op determinism: the same command "
                      "gives bit-identical results (slower; see benchmarks/determinism.py).")
    flags.DEFINE_enum("pag_mode", None, list(PAG_MODES), "Partial attention gate mode.")
    flags.DEFINE_bool("per_agent_batch_norm", None, "JointSeg: the classifier agent keeps its "
                      "own BatchNorm moving statistics in the shared encoder.")
    flags.DEFINE_float("clf_encoder_lr_scale", None, "JointSeg: the classifier agent's LR on "
                       "the shared encoder as a fraction of its LR on its head (1 = paper).")
    flags.DEFINE_enum("gradient_balance", None, list(GRADIENT_BALANCE),
                      "JointSeg: reconcile the agents' shared-encoder gradients: none (paper) "
                      "| normalize (classifier's norm = --balance_target x segmenter's) | "
                      "pcgrad (project away conflicting components).")
    flags.DEFINE_float("balance_target", None, "--gradient_balance=normalize: the classifier's "
                       "encoder-gradient norm as a multiple of the segmenter's.")
    flags.DEFINE_integer("input_size", None, "Model input size (divisible by 2**(levels+1)).")
    flags.DEFINE_string("graded_format", None, GRADED_FORMATS)
    flags.DEFINE_string("graded_train", None, "Graded (classification) training data.")
    flags.DEFINE_string("graded_val", None, "Graded validation data.")
    flags.DEFINE_string("masks_format", None, MASK_FORMATS)
    flags.DEFINE_string("masks_train", None, "Mask-annotated (segmentation) training data.")
    flags.DEFINE_string("masks_val", None, "Mask-annotated validation data.")
    flags.DEFINE_integer("masks_train_count", None, "Train the segmenter on this many mask "
                         "images (a fixed seeded subset; subsets nest); 0 = all.")
    flags.DEFINE_list("class_names", None, "Classes of the mask set, background first, when "
                      "they are not the fundus lesions (default for --masks_format=voc: VOC's 21).")
    flags.DEFINE_float("clf_true_label_fraction", None,
                       "Partial random labels: fraction of grades kept true (paper: 0.2).")
    flags.DEFINE_bool("affine", None, "TEFLA affine augmentation (rotation/zoom/shear/shift).")
    flags.DEFINE_bool("skip_bad_images", None, "Skip (count, log) unreadable images; "
                      "--noskip_bad_images makes any bad image an error.")
    flags.DEFINE_bool("validate_files", None, "Decode every file once before training and "
                      "report all bad files up front.")
    flags.DEFINE_bool("allow_val_overlap", None, "Accept validation images that are also "
                      "training images (refused by default: the numbers would not be held out).")


def config_from_flags() -> ExperimentConfig:
    """The chosen experiment with every given flag applied, validated."""
    config = get_experiment(FLAGS.experiment, FLAGS.scale)
    planned_steps = config.train.steps
    for flag_name, field_path in FIELD_FLAGS.items():
        value = FLAGS[flag_name].value
        if value is not None:
            override(config, field_path, value)
    for item in FLAGS.set:
        if "=" not in item:
            raise ConfigError(f"--set={item!r}: expected field.path=value")
        path, value = item.split("=", 1)
        override(config, path.strip(), value.strip())
    config.data.graded_format = canonical_graded_format(config.data.graded_format)
    fit_warmup_to_steps(config, planned_steps)
    class_names = FLAGS.class_names
    if class_names is None:
        class_names = run_class_names(config.data.masks_format)
    if class_names is not None:
        use_class_names(config, class_names)
    if FLAGS.model_dir is None:
        override(config, "run.model_dir", f"runs/{config.name}")
    require_predecessor_run(config, get_stages(FLAGS.experiment, FLAGS.scale))
    return config.validate()


def require_predecessor_run(config: ExperimentConfig, stages) -> None:
    """ConfigError when ``config`` is the last stage of a row of several and names no run
    to start from: without ``--init_encoder_from`` it would silently train from scratch
    (the suite runner wires the stages; by hand, the user does)."""
    if len(stages) < 2 or config.train.init_encoder_from:
        return
    names = " -> ".join(stage.name for stage in stages)
    raise ConfigError(f"--experiment={config.name} is the last stage of {names}: it starts "
                      f"from the run of its {stages[-2].name!r} stage. Train that first and "
                      "pass its run directory as --init_encoder_from=DIR (python -m "
                      "experiments.run trains the stages in order and wires them)")


def fit_warmup_to_steps(config: ExperimentConfig, planned_steps: int) -> None:
    """A run shorter than an agent's LR warm-up gets the warm-up scaled to its length
    (``scaled_warmup``), with a logged note, instead of an error: a 2-step smoke run of
    any experiment just works."""
    steps = config.train.steps
    for name in ("seg", "clf"):
        agent = getattr(config.train, name)
        if agent.warmup_steps >= steps:
            capped = scaled_warmup(agent.warmup_steps, steps, planned_steps)
            logging.warning("train.%s.warmup_steps=%d is not shorter than the %d-step run: "
                            "scaled to %d (set --set=train.%s.warmup_steps=N to choose)",
                            name, agent.warmup_steps, steps, capped, name)
            agent.warmup_steps = capped


def print_config_if_asked(config: ExperimentConfig) -> bool:
    """With ``--print_config``: print the effective config as JSON; True if printed."""
    if not FLAGS.print_config:
        return False
    print(json.dumps(to_dict(config), indent=2))
    return True
