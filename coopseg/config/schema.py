"""The config schema: one dataclass per part of an experiment (model, data, the two agents'
training, DecoupledNet, run settings) and the checks that tie the parts together."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

from coopseg.config.choices import (COLOR_JITTER_PRESETS, DECODER_BLOCKS, GRADIENT_BALANCE,
                                    MIXED_PRECISION_POLICIES, PAG_MODES, SEG_CLASS_WEIGHTINGS,
                                    STRATEGIES, TRAIN_MODES)
from coopseg.config.errors import ConfigError
from coopseg.config.methods import DEFAULT_METHOD, METHOD_SPECS, backbone_of, method_spec
from coopseg.config.taxonomy import LESION_CLASSES, LESION_PRIORITY, NUM_GRADES

# VGG-16's conv widths per block (Simonyan & Zisserman 2014, arXiv:1409.1556): the trunk
# of FCN-8s, the VGG-16 pre-trainer and DecoupledNet.
VGG16_WIDTHS: Tuple[int, ...] = (64, 128, 256, 512, 512)


def restores_stage1(config: "ExperimentConfig") -> bool:
    """True for a DecoupledNet stage 2, whose classifier comes from the stage-1 run: there
    ``backbone_weights`` only says that stage 1 started from it (input adapter), the file
    is not read again."""
    return config.stage == "segmenter"


def check_decoupled_shape(config: "ExperimentConfig") -> None:
    """The shape checks of a DecoupledNet / DeconvNet config: ``decoupled.*`` and an input
    size that the five 2x2 poolings unpool exactly. Its builders run these too."""
    config.decoupled.validate()
    size = config.model.input_size
    if size < 32 or size % 32:
        raise ConfigError(f"model.input_size={size} must be a positive multiple of 32 "
                          f"for {config.method} (five 2x2 poolings, unpooled exactly)")


def check_backbone_config(config: "ExperimentConfig") -> None:
    """The checks ``ExperimentConfig.validate`` runs when ``train.backbone_weights`` is set:
    a method with an ImageNet backbone, not together with ``train.init_encoder_from``
    (two initialisations of one backbone), and an existing file."""
    path = config.train.backbone_weights
    if not path:
        return
    backbone_of(config.method)
    if restores_stage1(config):
        return
    if config.train.init_encoder_from:
        raise ConfigError(
            f"train.backbone_weights={path!r} and train.init_encoder_from="
            f"{config.train.init_encoder_from!r} both initialise the backbone; set one of them")
    if not os.path.isfile(path):
        raise ConfigError(f"train.backbone_weights={path!r}: no such file")


@dataclass
class ModelConfig:
    """Shape of the JointSeg model (encoder M, classifier C, decoder S)."""

    input_size: int = 224
    num_grades: int = NUM_GRADES
    num_seg_classes: int = len(LESION_CLASSES)
    stem_filters: int = 32
    # One entry per resolution level of the encoder (paper Fig. 5): filters and the
    # number of cascaded residual inception blocks at that level.
    encoder_filters: Tuple[int, ...] = (32, 64, 128, 256)
    encoder_blocks: Tuple[int, ...] = (1, 1, 2, 2)
    classifier_filters: int = 256
    classifier_blocks: int = 2
    # Filters of the decoder level that upsamples to each encoder level, deepest first.
    # Empty means "mirror the encoder" (encoder_filters reversed, then stem_filters // 2).
    decoder_filters: Tuple[int, ...] = ()
    decoder_block: str = "residual_inception"  # or "conv" (3x3 conv-BN-ReLU)
    pag_mode: str = "gated"
    use_5x5: bool = False  # GoogLeNet 5x5 branch; False = two stacked 3x3 (same field)
    classifier_dropout: float = 0.2
    # Scales the VGG widths of the FCN-8s / VGG-16 baselines (1.0 = the published nets).
    vgg_width_multiplier: float = 1.0
    # BatchNorm after every conv of the VGG-16 trunks (FCN-8s, the VGG-16 pre-trainer,
    # DecoupledNet's classifier): what makes them trainable from scratch. The published
    # VGG-16 has none (conv + bias), which ImageNet weight files need.
    vgg_batch_norm: bool = True
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    # Synchronised BatchNorm: batch statistics over all replicas of a tf.distribute
    # strategy instead of each replica's share of the batch. Needed for N-replica
    # training to equal single-device training on the global batch (docs/speed.md, Multi-GPU).
    sync_batch_norm: bool = False
    # JointSeg only: the classifier agent's forward passes keep their own BatchNorm moving
    # statistics in the shared encoder (γ/β and every conv stay shared). The agents' batches
    # come from different sets with different augmentation; one set of statistics, the
    # mean of both, describes neither at evaluation (models/agent_batch_norm.py).
    per_agent_batch_norm: bool = False

    @property
    def num_levels(self) -> int:
        return len(self.encoder_filters)

    def resolved_decoder_filters(self) -> Tuple[int, ...]:
        """Filters of each upsampling step, from the deepest (encoder output) up."""
        if self.decoder_filters:
            return tuple(self.decoder_filters)
        return tuple(reversed(self.encoder_filters)) + (max(8, self.stem_filters // 2),)

    def validate(self) -> None:
        if len(self.encoder_filters) != len(self.encoder_blocks):
            raise ConfigError(
                f"model.encoder_filters has {len(self.encoder_filters)} levels but "
                f"model.encoder_blocks has {len(self.encoder_blocks)}; they must match")
        if not self.encoder_filters:
            raise ConfigError("model.encoder_filters must name at least one level")
        # stem (/2) + one stride-2 conv per level: the decoder's 2x transposed convs
        # only land exactly on the encoder sizes if every downsampling divides evenly.
        factor = 2 ** (self.num_levels + 1)
        if self.input_size % factor:
            raise ConfigError(
                f"model.input_size={self.input_size} must be divisible by {factor} "
                f"(2 ** (levels + 1) for {self.num_levels} encoder levels)")
        if len(self.resolved_decoder_filters()) != self.num_levels + 1:
            raise ConfigError(
                f"model.decoder_filters needs {self.num_levels + 1} entries "
                f"(one per upsampling step), got {len(self.decoder_filters)}")
        if self.pag_mode not in PAG_MODES:
            raise ConfigError(f"model.pag_mode={self.pag_mode!r}; choose one of {PAG_MODES}")
        if self.decoder_block not in DECODER_BLOCKS:
            raise ConfigError(
                f"model.decoder_block={self.decoder_block!r}; choose one of {DECODER_BLOCKS}")
        if self.num_grades < 2 or self.num_seg_classes < 2:
            raise ConfigError("model.num_grades and model.num_seg_classes must be >= 2")
        for name in ("stem_filters", "classifier_filters", "classifier_blocks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1")
        if not 0.0 <= self.classifier_dropout < 1.0:
            raise ConfigError("model.classifier_dropout must be in [0, 1)")
        if self.per_agent_batch_norm and self.sync_batch_norm:
            raise ConfigError("model.per_agent_batch_norm does not support "
                              "model.sync_batch_norm yet; switch one off")


@dataclass
class AgentConfig:
    """Optimiser of one agent: SGD + Nesterov momentum with polynomial LR decay (TEFLA).

    The defaults are TEFLA's ``PolyDecayPolicy``: ``lr0 * (1 - t / T) ** 10``, down to 0
    at the end of the run (``training/schedules.py``).
    """

    learning_rate: float = 0.01
    end_learning_rate: float = 0.0
    decay_power: float = 10.0
    warmup_steps: int = 0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4  # L2 on conv/dense kernels, added to this agent's loss
    batch_size: int = 2
    clipnorm: Optional[float] = None

    def validate(self, name: str) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"{name}.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.end_learning_rate <= self.learning_rate:
            raise ConfigError(f"{name}.end_learning_rate must be in [0, learning_rate]")
        if self.batch_size < 1:
            raise ConfigError(f"{name}.batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{name}.momentum must be in [0, 1)")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.decay_power <= 0:
            raise ConfigError(f"{name}: weight_decay, warmup_steps >= 0 and decay_power > 0")


@dataclass
class DataConfig:
    """Where the two agents' data come from, and the paper's preprocessing (Sec. III of the JointSeg paper).

    ``graded_*`` feeds the classifier agent (image -> grade); ``masks_*`` feeds the
    segmentation agent (image -> class-index mask). ``format`` names the on-disk layout
    (see ``data_pipelines.datasets``); ``synthetic`` generates the embedded fundus set.
    """

    graded_format: str = "eyepacs"  # eyepacs | aptos | idrid_grading | tfrecord
    graded_train: str = ""
    graded_val: str = ""
    masks_format: str = "generic"  # generic | idrid | voc | diaretdb1 | heimed | tfrecord
    masks_train: str = ""
    masks_val: str = ""
    # Train the segmentation agent on this many mask images only (0 = all): a fixed
    # seeded order of the set, so the subsets of a learning curve nest (10 of the 30 are
    # the first 10) and every seed and method sees the same images (data_pipelines/subsets.py).
    masks_train_count: int = 0
    class_names: Tuple[str, ...] = LESION_CLASSES
    mask_priority: Tuple[str, ...] = LESION_PRIORITY
    resize_size: int = 256  # paper: resize to 256 then random crop 224
    # The segmentation agent's working resolution (0 = off: resize_size, as the paper).
    # > 0: mask images are held at this size; the segmenter trains on patches of
    # model.input_size cut from them, and validation, coopseg-evaluate, coopseg-predict
    # and the SavedModel segment the whole image at this size by overlapping tiles
    # (models/sliding_window.py). The classifier agent keeps whole images at resize_size.
    working_size: int = 0
    # With working_size: the share of training patches centred on a lesion pixel (the
    # rest are uniform); lesions cover ~3 % of a fundus photo. nnU-Net oversamples
    # foreground in a third of its patches.
    foreground_patch_fraction: float = 1.0 / 3.0
    # Paper augmentation (Sec. III): flips, random padding, colour jitter (clf only).
    flip_left_right: bool = True
    flip_up_down: bool = True
    random_pad: int = 16
    color_jitter: str = "tefla"  # one of COLOR_JITTER_PRESETS
    affine: bool = False  # TEFLA rotation/zoom/shear/translation via tfa.image.transform
    # Partial random labels (Sec. II-C): fraction of classification labels kept true.
    clf_true_label_fraction: float = 1.0
    skip_bad_images: bool = True  # count + log unreadable images instead of failing
    # Decode every file once before training so any bad file is reported up front
    # (costs about one decode-only epoch).
    validate_files: bool = False
    # A validation set sharing images (same file or same bytes) with its training set is
    # refused: its numbers would not be held out. True downgrades that to a warning.
    allow_val_overlap: bool = False
    shuffle_buffer: int = 1024
    cache: bool = False
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 <= self.clf_true_label_fraction <= 1.0:
            raise ConfigError("data.clf_true_label_fraction must be in [0, 1]")
        if self.resize_size < 8 or self.random_pad < 0:
            raise ConfigError("data.resize_size must be >= 8 and data.random_pad >= 0")
        if len(self.class_names) < 2:
            raise ConfigError("data.class_names needs background plus at least one class")
        if self.masks_train_count < 0:
            raise ConfigError(f"data.masks_train_count must be >= 0 (0 = all), got "
                              f"{self.masks_train_count}")
        if self.masks_train_count and self.masks_format == "tfrecord":
            raise ConfigError("data.masks_train_count needs a folder format (the subset is "
                              "chosen from the file list), not tfrecord")
        if self.working_size < 0 or not 0.0 <= self.foreground_patch_fraction <= 1.0:
            raise ConfigError("data.working_size must be >= 0 (0 = off) and "
                              "data.foreground_patch_fraction in [0, 1]")
        if self.color_jitter not in COLOR_JITTER_PRESETS:
            raise ConfigError(f"data.color_jitter={self.color_jitter!r}; choose one of "
                              f"{COLOR_JITTER_PRESETS}")


@dataclass
class CooperationConfig:
    """How the two agents share the encoder θ1 in joint training. The defaults are the
    paper's Eq. 2: each agent applies its whole gradient with its own optimizer.

    The options act on the gradients of the shared encoder variables only, after both
    agents' gradients exist and before either update (``training/cooperation.py``).
    """

    # The classifier agent's step on θ1 is this fraction of its step on its head θ2
    # (the paper: the encoder is learned by both agents "at a different rate"). Exact
    # for SGD with momentum: scaling a gradient scales that variable's learning rate.
    clf_encoder_lr_scale: float = 1.0
    # none | normalize (the classifier's θ1 gradient rescaled to ``balance_target`` x
    # the segmenter's θ1 gradient norm) | pcgrad (Yu et al. 2020, arXiv:2001.06782:
    # where the two θ1 gradients conflict, each loses its component along the other).
    gradient_balance: str = "none"
    balance_target: float = 1.0

    def is_paper(self) -> bool:
        return self == CooperationConfig()

    def validate(self) -> None:
        if self.clf_encoder_lr_scale < 0:
            raise ConfigError("train.cooperation.clf_encoder_lr_scale must be >= 0, got "
                              f"{self.clf_encoder_lr_scale}")
        if self.gradient_balance not in GRADIENT_BALANCE:
            raise ConfigError(f"train.cooperation.gradient_balance={self.gradient_balance!r}; "
                              f"choose one of {GRADIENT_BALANCE}")
        if self.balance_target <= 0:
            raise ConfigError("train.cooperation.balance_target must be > 0, got "
                              f"{self.balance_target}")


@dataclass
class TrainConfig:
    """The cooperative run: which agents train, for how long, and where output goes."""

    mode: str = "joint"  # joint | seg_only | clf_only
    steps: int = 20000
    # Paper Sec. III: classifier LR is 30x and its batch 32x the segmentation agent's.
    lr_ratio: float = 30.0
    batch_ratio: int = 32
    seg: AgentConfig = field(default_factory=lambda: AgentConfig(learning_rate=1e-3, batch_size=1))
    # learning_rate / batch_size of ``clf`` are derived from ``seg`` x ratios unless
    # ``derive_clf_from_ratios`` is False (the baselines train a classifier alone).
    clf: AgentConfig = field(default_factory=AgentConfig)
    derive_clf_from_ratios: bool = True
    cooperation: CooperationConfig = field(default_factory=CooperationConfig)
    # The validation batches behind the reported metrics (0 = the whole validation set):
    # part of the result, since it changes the numbers a run reports.
    eval_batches: int = 0
    seed: int = 0  # weight initialisation, data order and augmentation
    # Changes the arithmetic the model learns with (float16/bfloat16 activations).
    mixed_precision: str = ""  # "" | mixed_float16 | mixed_bfloat16
    # The run directory this run starts from: the trained classifier whose encoder a
    # two-step segmenter takes, or DecoupledNet's stage-1 classifier for its stage 2.
    init_encoder_from: str = ""
    # A Keras weights file (.h5) of the ImageNet backbone (VGG-16, VGG-19, InceptionV3)
    # to start from, e.g. keras' vgg16_weights_tf_dim_ordering_tf_kernels.h5.
    backbone_weights: str = ""
    # Segmentation loss weighting: "none" is the paper's plain softmax cross-entropy.
    seg_class_weighting: str = "none"  # none | inverse_sqrt_frequency | median_frequency
    seg_class_weight_max: float = 50.0

    @property
    def trains_classifier(self) -> bool:
        """Whether the classifier agent trains (``mode`` joint or clf_only)."""
        return self.mode in ("joint", "clf_only")

    @property
    def trains_segmenter(self) -> bool:
        """Whether the segmentation agent trains (``mode`` joint or seg_only)."""
        return self.mode in ("joint", "seg_only")

    def clf_agent(self) -> AgentConfig:
        """The classifier agent's optimiser config with the paper's ratios applied."""
        if not self.derive_clf_from_ratios:
            return self.clf
        return dataclasses.replace(
            self.clf,
            learning_rate=self.seg.learning_rate * self.lr_ratio,
            end_learning_rate=self.seg.end_learning_rate * self.lr_ratio,
            batch_size=self.seg.batch_size * self.batch_ratio,
        )

    def validate(self) -> None:
        if self.mode not in TRAIN_MODES:
            raise ConfigError(f"train.mode={self.mode!r}; choose one of {TRAIN_MODES}")
        if self.steps < 1:
            raise ConfigError(f"train.steps must be >= 1, got {self.steps}")
        if self.lr_ratio <= 0 or self.batch_ratio < 1:
            raise ConfigError("train.lr_ratio must be > 0 and train.batch_ratio >= 1")
        if self.eval_batches < 0:
            raise ConfigError(f"train.eval_batches must be >= 0 (0 = all), got {self.eval_batches}")
        self.seg.validate("train.seg")
        self.clf_agent().validate("train.clf")
        self.cooperation.validate()
        if not self.cooperation.is_paper() and not (self.trains_classifier
                                                    and self.trains_segmenter):
            raise ConfigError(f"train.cooperation options act between two agents; "
                              f"train.mode={self.mode!r} trains one (use joint)")
        for name, agent in (("seg", self.seg), ("clf", self.clf)):
            if agent.warmup_steps >= self.steps:
                raise ConfigError(f"train.{name}.warmup_steps={agent.warmup_steps} must be smaller "
                                  f"than train.steps={self.steps}")
        if self.mixed_precision not in MIXED_PRECISION_POLICIES:
            raise ConfigError(f"train.mixed_precision={self.mixed_precision!r}; choose one of "
                              f"{MIXED_PRECISION_POLICIES}")
        if self.seg_class_weighting not in SEG_CLASS_WEIGHTINGS:
            raise ConfigError(f"train.seg_class_weighting={self.seg_class_weighting!r}; choose "
                              f"one of {SEG_CLASS_WEIGHTINGS}")


@dataclass
class RunConfig:
    """How a run is executed: where its files go, how often it logs, validates and
    checkpoints, and on which devices. None of it changes what the run learns or reports,
    so none of it is part of a result's identity (``result_dict``)."""

    model_dir: str = "runs/default"
    log_every: int = 20
    eval_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    image_summaries: int = 3
    # "START,END": a TensorBoard profiler trace of steps START..END (1-based, inclusive)
    # into <model_dir>/logs/profile; "" = no profiling.
    profile_steps: str = ""
    strategy: str = "default"  # default | mirrored | multi_worker | tpu (training/strategy.py)
    jit_compile: bool = False  # XLA; measured slower on CPU (docs/speed.md)
    # TensorFlow op determinism (tf.config.experimental.enable_op_determinism): the same
    # command gives bit-identical weights, also on a GPU.
    deterministic: bool = False

    def profile_range(self) -> Optional[Tuple[int, int]]:
        """``profile_steps`` as (start, end), or None when not profiling."""
        if not self.profile_steps.strip():
            return None
        try:
            start, end = (int(v) for v in self.profile_steps.split(","))
        except ValueError as err:
            raise ConfigError(f"run.profile_steps={self.profile_steps!r}: expected "
                              "START,END (two step numbers)") from err
        if not 1 <= start <= end:
            raise ConfigError(f"run.profile_steps={self.profile_steps!r}: need 1 <= START <= END")
        return start, end

    def validate(self) -> None:
        self.profile_range()
        for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"run.{name} must be >= 1, got {getattr(self, name)}")
        if self.image_summaries < 0:
            raise ConfigError(f"run.image_summaries must be >= 0, got {self.image_summaries}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"run.strategy={self.strategy!r}; choose one of {STRATEGIES}")


@dataclass
class DecoupledConfig:
    """Shape of DecoupledNet and its DeconvNet baseline ("Decoupled Deep Neural Network for
    Semi-supervised Semantic Segmentation", Hong et al. 2015, arXiv:1506.04924). The
    defaults are the paper's: VGG-16 widths, fc 4096. Image size is ``model.input_size``,
    the image-level classes are ``data.class_names[1:]``, BatchNorm of the VGG-16 trunk is
    ``model.vgg_batch_norm``."""

    width_multiplier: float = 1.0  # VGG-16 widths x this (1.0 = the paper)
    fc_units: int = 4096
    bridge_filters: int = 512
    score_threshold: float = 0.5  # classes scored at least this are segmented at inference
    dropout: float = 0.5
    strong_per_class: int = 0  # N strong (pixel) annotations per class; 0 = all

    def vgg_widths(self) -> Tuple[int, ...]:
        """Widths of the five VGG-16 blocks after the width multiplier (at least 1)."""
        return tuple(max(1, round(w * self.width_multiplier)) for w in VGG16_WIDTHS)

    def validate(self) -> None:
        for name in ("fc_units", "bridge_filters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"decoupled.{name} must be >= 1, got {getattr(self, name)}")
        if self.width_multiplier <= 0:
            raise ConfigError(f"decoupled.width_multiplier must be > 0, got "
                              f"{self.width_multiplier}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ConfigError(f"decoupled.score_threshold must be in [0, 1], got "
                              f"{self.score_threshold}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"decoupled.dropout must be in [0, 1), got {self.dropout}")
        if self.strong_per_class < 0:
            raise ConfigError(f"decoupled.strong_per_class must be >= 0 (0 = all), got "
                              f"{self.strong_per_class}")


@dataclass
class ExperimentConfig:
    """Everything one run needs. ``method`` picks the model family."""

    name: str = DEFAULT_METHOD
    method: str = DEFAULT_METHOD  # a name in the method table (config/methods.py)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decoupled: DecoupledConfig = field(default_factory=DecoupledConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def stage(self) -> str:
        """A staged method's stage: "classifier" (stage 1, ``train.mode`` clf_only) or
        "segmenter" (stage 2, seg_only, from the stage-1 run); "" for other methods."""
        if not method_spec(self.method).staged:
            return ""
        return {"clf_only": "classifier", "seg_only": "segmenter"}.get(self.train.mode, "")

    def validate(self) -> "ExperimentConfig":
        spec = method_spec(self.method)
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.run.validate()
        if spec.decoupled_family:
            check_decoupled_shape(self)
        if self.data.working_size:
            if self.data.working_size < self.model.input_size:
                raise ConfigError(f"data.working_size={self.data.working_size} is smaller than "
                                  f"the segmenter's patches (model.input_size="
                                  f"{self.model.input_size}); 0 turns it off")
            if spec.decoupled_family:
                raise ConfigError(f"data.working_size (patch training, tiled inference) is "
                                  f"for per-pixel softmax segmenters; {self.method} segments "
                                  "per class: use 0")
        if len(self.data.class_names) != self.model.num_seg_classes:
            raise ConfigError(
                f"data.class_names has {len(self.data.class_names)} classes but "
                f"model.num_seg_classes={self.model.num_seg_classes}")
        if not spec.shared_encoder:
            shared = ", ".join(s.name for s in METHOD_SPECS.values() if s.shared_encoder)
            if not self.train.cooperation.is_paper():
                raise ConfigError(f"train.cooperation options need a shared encoder: method "
                                  f"{self.method!r} has none (use {shared})")
            if self.model.per_agent_batch_norm:
                raise ConfigError(f"model.per_agent_batch_norm acts in a shared encoder; "
                                  f"method {self.method!r} has none (use {shared})")
        if self.train.backbone_weights:
            check_backbone_config(self)
        return self


def scaled_warmup(warmup: int, steps: int, planned_steps: int) -> int:
    """The LR warm-up of a run whose step budget changed from ``planned_steps`` to
    ``steps``: scaled in proportion, so the schedule keeps its shape, and always shorter
    than the run (a 2-step smoke run of a 40-step warm-up gets 0)."""
    return max(0, min(steps - 1, round(warmup * steps / max(1, planned_steps))))


def use_class_names(config: "ExperimentConfig", class_names) -> None:
    """Point ``config`` at a mask set with other classes (background first), e.g. VOC's 21:
    the class list, the segmentation head's width, and the overlap priority cut to the
    names that still exist (class-index label maps need none)."""
    names = tuple(class_names)
    if len(names) < 2:
        raise ConfigError(f"class names {names}: need background plus at least one class")
    config.data.class_names = names
    config.data.mask_priority = tuple(p for p in config.data.mask_priority if p in names[1:])
    config.model.num_seg_classes = len(names)
