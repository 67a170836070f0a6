"""DecoupledNet's Table 1 (Hong et al. 2015) as experiments: rows, their stages, paper numbers.

A row is one cell column x strong-annotation count of Table 1:

- ``DecoupledNet``: stage 1 classifier on the image-level labels of *all* training
  images, stage 2 bridging + segmentation on N strong annotations per class;
- ``DecoupledNet-Str``: the same network, *both* stages on the N strong images only;
- ``DeconvNet``: the encoder-decoder alone, trained on the N strong images;

for N in {full, 25, 10, 5}. Each row is an ordered list of ``experiments.common.Stage``s
(``row_stages``, the form ``experiments.run`` runs): DecoupledNet rows train a
``classifier`` (clf_only) and then a ``segmenter`` (seg_only) that restores it from the
classifier's run directory; DeconvNet rows one stage. Rows share equal stages: all
DecoupledNet rows have the same classifier, and DecoupledNet-Str "full" *is*
DecoupledNet "full", as in the paper's table (``wired_stages`` names run directories
by what a stage trains on; ``experiments.run`` reuses runs of identical configs).

    python -m experiments.decouplednet_suite --scale=small --run_root=runs/decouplednet
    python -m experiments.decouplednet_suite --rows=decouplednet_5,decouplednet_str_5

Sizes per scale (``_sizes``; our choices where the paper is silent):
``paper`` = the authors' Caffe recipe (VGG-16, 350 px resize, random 320 crops and
mirroring, SGD lr 0.01, momentum 0.9, weight decay 5e-4; batch and steps ours);
``small`` = 128 px crops of 144 px images, VGG widths / 8, fc 256, a few CPU minutes
per stage, the segmenters at the CPU learning rate of ``experiments/scales.py``;
``tiny`` = tests. Segmentation losses are weighted per class as ``experiments/scales.py``
sets for every method: not at ``paper`` scale (the paper's plain cross-entropy);
inverse-sqrt class frequency at the CPU scales, where unweighted runs of every
segmenter predict only background. DecoupledNet's foreground of class l then gets
the weight DeconvNet gives class l.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

from coopseg.config import AgentConfig, DecoupledConfig, ExperimentConfig
from coopseg.training.train import train
from coopseg.utils.atomic_write import write_json_atomically, write_text_atomically
from data_pipelines.synthetic import use_synthetic_data
from experiments.common import Stage
from experiments.scales import data_config, model_config, train_config

PAPER_SOURCE = "Hong et al. 2015, Table 1: PASCAL VOC 2012 val, mIoU (%)"


@dataclass(frozen=True)
class Row:
    """One cell of Table 1: a method trained with ``strong`` annotations per class."""

    method: str  # Table 1 column: DecoupledNet | DecoupledNet-Str | DeconvNet
    strong: int  # N strong annotations per class; 0 = full (every training image)
    paper_miou: float  # the paper's number for this cell

    @property
    def strong_label(self) -> str:
        return "full" if self.strong == 0 else str(self.strong)


# experiment name (experiments/<name>.py) -> row
ROWS: Dict[str, Row] = {
    "decouplednet_full": Row("DecoupledNet", 0, 67.5),
    "decouplednet_25": Row("DecoupledNet", 25, 62.1),
    "decouplednet_10": Row("DecoupledNet", 10, 57.4),
    "decouplednet_5": Row("DecoupledNet", 5, 53.1),
    "decouplednet_str_full": Row("DecoupledNet-Str", 0, 67.5),
    "decouplednet_str_25": Row("DecoupledNet-Str", 25, 50.3),
    "decouplednet_str_10": Row("DecoupledNet-Str", 10, 41.7),
    "decouplednet_str_5": Row("DecoupledNet-Str", 5, 32.7),
    "decouplednet_deconvnet_full": Row("DeconvNet", 0, 67.1),
    "decouplednet_deconvnet_25": Row("DeconvNet", 25, 38.6),
    "decouplednet_deconvnet_10": Row("DeconvNet", 10, 21.5),
    "decouplednet_deconvnet_5": Row("DeconvNet", 5, 15.3),
}
# For the shared experiment runner: suite name -> its rows, in table order.
SUITES: Dict[str, Tuple[str, ...]] = {"decouplednet_table1": tuple(ROWS)}
PAPER_MIOU: Dict[str, float] = {name: row.paper_miou for name, row in ROWS.items()}
TABLE_TITLE = "DecoupledNet, Table 1: mIoU with N strong annotations per class"
TABLE_NOTE = ("Paper numbers: PASCAL VOC 2012 val, mIoU over 21 classes including "
              "background; ours: the same definition on our validation set. -Str trains both "
              "stages on the strong images only; DeconvNet is the encoder-decoder alone. "
              "Classifier mAP and recall (stage 1, on the validation images' image-level "
              "labels; recall at decoupled.score_threshold) bound DecoupledNet: a class "
              "scored below the threshold is never segmented. \"mIoU given true classes\" "
              "is a diagnostic, not the paper's inference: DecoupledNet's segmenter run for "
              "the classes each validation image really contains.")
# The orderings Table 1 shows at 25, 10 and 5 strong annotations per class, as
# (text, row a, row b): the paper reports mIoU(a) > mIoU(b).
CLAIMS: Tuple[Tuple[str, str, str], ...] = tuple(
    claim for n in ("25", "10", "5") for claim in (
        (f"weak labels help: DecoupledNet > DecoupledNet-Str at {n} strong/class",
         f"decouplednet_{n}", f"decouplednet_str_{n}"),
        (f"DecoupledNet > DeconvNet at {n} strong/class",
         f"decouplednet_{n}", f"decouplednet_deconvnet_{n}"),
        (f"the decoupled net alone helps: DecoupledNet-Str > DeconvNet at {n} strong/class",
         f"decouplednet_str_{n}", f"decouplednet_deconvnet_{n}")))


# ----------------------------------------------------------------------------- sizes
# Hong et al.'s recipe augments by random crops (of the resized image) and left/right
# mirroring only: no colour jitter, no up/down flip, no padding, in both stages. The
# JointSeg (TEFLA) augmentation of experiments/scales.py is switched off here.
HONG_AUGMENTATION = dict(random_pad=0, flip_up_down=False, flip_left_right=True,
                         color_jitter="none", affine=False)


def _sizes(scale: str) -> Tuple[dict, dict, DecoupledConfig, dict, Dict[str, int]]:
    """(model, data, decoupled, train, steps per mode) of DecoupledNet/DeconvNet at ``scale``."""
    if scale == "paper":
        sgd = dict(learning_rate=0.01, end_learning_rate=1e-4, momentum=0.9, nesterov=False,
                   weight_decay=5e-4, decay_power=1.0)
        return ({"input_size": 320}, {"resize_size": 350, **HONG_AUGMENTATION}, DecoupledConfig(),
                dict(seg=AgentConfig(batch_size=16, **sgd), clf=AgentConfig(batch_size=32, **sgd),
                     eval_every=2000, checkpoint_every=1000),
                {"clf_only": 20000, "seg_only": 20000})
    if scale == "small":
        # Measured here (synthetic fundus, 128 px, from scratch): the classifier learns
        # at the recipe's 0.01 and only its label priors at 0.1; segmenters need the CPU
        # rate of experiments/scales.py (0.1 + warm-up) to learn anything in minutes.
        recipe = dict(momentum=0.9, nesterov=False, weight_decay=5e-4, decay_power=1.0)
        return ({"input_size": 128}, {"resize_size": 144, **HONG_AUGMENTATION},
                DecoupledConfig(width_multiplier=1 / 8, fc_units=256, bridge_filters=64),
                dict(seg=AgentConfig(batch_size=8, learning_rate=0.1, end_learning_rate=1e-3,
                                     warmup_steps=40, **recipe),
                     clf=AgentConfig(batch_size=8, learning_rate=0.01, end_learning_rate=1e-4,
                                     **recipe),
                     log_every=20, eval_every=200, checkpoint_every=200),
                {"clf_only": 400, "seg_only": 600})
    recipe = dict(learning_rate=0.01, end_learning_rate=1e-3, momentum=0.9, nesterov=False,
                  weight_decay=5e-4, decay_power=1.0)
    return ({"input_size": 32}, {"resize_size": 36, **HONG_AUGMENTATION},
            DecoupledConfig(width_multiplier=1 / 16, fc_units=16, bridge_filters=8, dropout=0.0),
            dict(seg=AgentConfig(batch_size=2, **recipe), clf=AgentConfig(batch_size=4, **recipe),
                 log_every=2, eval_every=4, checkpoint_every=4, image_summaries=1),
            {"clf_only": 4, "seg_only": 4})


def decoupled_experiment(scale: str, *, method: str, mode: str, strong_per_class: int,
                         classifier_run: str = "") -> ExperimentConfig:
    """A DecoupledNet (or DeconvNet) stage at ``scale``; data paths are left to the caller."""
    model, data, decoupled, train, steps = _sizes(scale)
    stage_steps = steps["clf_only" if mode == "clf_only" else "seg_only"]
    cfg = ExperimentConfig(method=method, model=model_config(scale, **model),
                           data=data_config(scale, **data),
                           train=train_config(scale, mode=mode, steps=stage_steps,
                                              derive_clf_from_ratios=False, **train))
    cfg.decoupled = dataclasses.replace(decoupled, strong_per_class=strong_per_class,
                                        classifier_run=classifier_run)
    return cfg


# ---------------------------------------------------------------------------- stages
def _subset(n: int) -> str:
    return "all" if n == 0 else f"n{n}"


def _plan(name: str, scale: str) -> List[Tuple[str, Stage]]:
    """(content key, stage) pairs of row ``name``: equal keys train the same thing."""
    row = ROWS[name]
    n = row.strong
    if row.method == "DeconvNet":
        return [(f"deconvnet_{_subset(n)}", Stage("train", decoupled_experiment(
            scale, method="deconvnet", mode="seg_only", strong_per_class=n)))]
    # DecoupledNet's classifier sees every image's labels; -Str's only the strong images.
    clf_n = 0 if row.method == "DecoupledNet" else n
    return [(f"decouplednet_classifier_{_subset(clf_n)}", Stage("classifier", decoupled_experiment(
                scale, method="decouplednet", mode="clf_only", strong_per_class=clf_n))),
            (f"decouplednet_segmenter_{_subset(n)}_clf_{_subset(clf_n)}", Stage(
                "segmenter", decoupled_experiment(scale, method="decouplednet",
                                                  mode="seg_only", strong_per_class=n)))]


def row_stages(name: str, scale: str) -> List[Stage]:
    """The ordered stages of row ``name`` in ``experiments.run``'s form.

    ``classifier`` then ``segmenter`` for the DecoupledNet rows (the runner hands the
    classifier's run directory to the segmenter as ``train.init_encoder_from``, which
    DecoupledNet's stage 2 restores its frozen classifier from), ``train`` for DeconvNet.
    """
    return [stage for _, stage in _plan(name, scale)]


def wired_stages(name: str, scale: str, run_root: str) -> List[Stage]:
    """``row_stages`` with run directories ``<run_root>/<content key>`` and each
    segmenter's ``decoupled.classifier_run`` set: rows share equal stages' runs."""
    stages, classifier_dir = [], ""
    for key, stage in _plan(name, scale):
        cfg = stage.config
        cfg.name = key
        cfg.train.model_dir = os.path.join(run_root, key)
        if cfg.method == "decouplednet" and cfg.train.mode == "seg_only":
            cfg.decoupled.classifier_run = classifier_dir
        classifier_dir = cfg.train.model_dir
        stages.append(stage)
    return stages


def row_config(name: str, scale: str) -> ExperimentConfig:
    """The row's final stage (what ``coopseg-train --experiment=<name>`` runs).

    A DecoupledNet row's stage 2 needs its finished stage 1: pass
    ``--init_encoder_from=<stage-1 model_dir>``, or run the whole row with this
    module's command line or ``experiments.run``.
    """
    cfg = row_stages(name, scale)[-1].config
    cfg.train.model_dir = os.path.join("runs", name)
    return cfg


# ------------------------------------------------------------------------- running
def run_row(name: str, scale: str, run_root: str,
            use_data: Callable[[ExperimentConfig], None], export: bool = False) -> dict:
    """Train (or, when finished, just evaluate) each stage of a row; the last one's result.

    ``use_data(config)`` points a stage's config at the data (e.g.
    ``data_pipelines.synthetic.use_synthetic_data``). Returns ``coopseg.training.train.train``'s
    summary of the final stage, plus ``row`` and ``paper_miou``.
    """
    import tensorflow as tf


    out: dict = {}
    for stage in wired_stages(name, scale, run_root):
        use_data(stage.config)
        tf.keras.backend.clear_session()  # stages share nothing but their checkpoints
        out = train(stage.config.validate(), export=export)
    row = ROWS[name]
    out.update(row=name, method=row.method, strong=row.strong_label, paper_miou=row.paper_miou)
    return out


def table(results: Sequence[dict]) -> str:
    """Markdown table of ``run_row`` results next to the paper's numbers."""
    lines = ["| row | method | strong / class | mIoU (ours) | mIoU w/o bg (ours) | "
             "paper mIoU |", "|---|---|---|---|---|---|"]
    for r in results:
        seg = r["metrics"].get("segmentation", {})
        ours = [f"{100 * seg[k]:.1f}" if seg.get(k) is not None else "-"
                for k in ("miou", "miou_no_background")]
        lines.append(f"| {r['row']} | {r['method']} | {r['strong']} | {ours[0]} | {ours[1]} | "
                     f"{r['paper_miou']:.1f} |")
    return "\n".join(lines + [f"\nPaper: {PAPER_SOURCE}."])


def _main(argv: List[str]) -> None:
    from absl import app, flags


    del argv
    flags_ = flags.FLAGS
    rows = flags_.rows or list(ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise app.UsageError(f"unknown rows {unknown}; choose from {list(ROWS)}")
    results = [run_row(r, flags_.scale, flags_.run_root,
                       lambda c: use_synthetic_data(c, flags_.data_dir, flags_.scale),
                       export=flags_.export) for r in rows]
    text = table(results)
    os.makedirs(flags_.run_root, exist_ok=True)
    write_text_atomically(os.path.join(flags_.run_root, "table1.md"), text + "\n")
    write_json_atomically(os.path.join(flags_.run_root, "table1.json"), results, default=str)
    print(text)


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_list("rows", [], "Rows to run (default: all of Table 1).")
    flags.DEFINE_enum("scale", "small", ("paper", "small", "tiny"), "Experiment size.")
    flags.DEFINE_string("run_root", "runs/decouplednet", "Where the stages' run dirs go.")
    flags.DEFINE_string("data_dir", "data/synthetic_decouplednet",
                        "Synthetic fundus set (generated or reused); lesions are the classes.")
    flags.DEFINE_bool("export", False, "Export each stage's SavedModel.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(_main)
