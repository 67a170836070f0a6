"""The paper's tables and our ablations as suites: rows, the paper's numbers, its claims.

A suite is what ``python -m experiments.run --suite=<name>`` trains and reports: its rows
(``experiments/rows/<row>.py``), the tables of ``results.md`` (columns and the paper's
numbers as in the paper, ours beside them) and the paper's claims about those rows, which
``experiments.results`` checks against our numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from coopseg.config import ConfigError
from experiments import data_efficiency, real_lesions
from experiments.common import Stage
from experiments.registry import get_stages


@dataclass(frozen=True)
class Row:
    """One row of a table: an experiment module and the paper's numbers for it."""

    name: str  # experiments/rows/<name>.py
    label: str  # as the paper's table names it
    paper: Mapping[str, float] = field(default_factory=dict)  # metric -> percent


@dataclass(frozen=True)
class Column:
    """A column of a results table. ``metric`` keys are those of ``results.row_metrics``;
    ``setting`` columns show a config field (dotted path) of the row's final stage."""

    header: str
    metric: str = ""
    setting: str = ""
    kind: str = "percent"  # percent | kappa | seconds | value


@dataclass(frozen=True)
class Table:
    title: str
    rows: Tuple[str, ...]
    columns: Tuple[Column, ...]
    # Reference rows with only paper numbers (e.g. human performance): (label, metric -> %).
    reference_rows: Tuple[Tuple[str, Mapping[str, float]], ...] = ()
    note: str = ""
    # Ablations have no paper numbers; the default row's Table I number would mislead
    # there (the CPU scales' defaults are not the paper's settings).
    paper_columns: bool = True


@dataclass(frozen=True)
class Claim:
    """A claim of the paper about two rows (or a row and a number), checked on our results.

    ``relation``: ``greater`` (a > b), ``not_worse`` (a >= b - tolerance, the
    partial-random-label claim) or ``greater_than_value`` (a > value, percent).
    """

    text: str
    source: str
    metric: str
    a: str
    b: str = ""
    relation: str = "greater"
    value: Optional[float] = None
    tolerance: float = 0.0  # percent points, for not_worse


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tables: Tuple[Table, ...]
    claims: Tuple[Claim, ...] = ()
    # DecoupledNet's rows learn from the mask set alone (image-level labels come from
    # its masks): such a suite runs on a mask set without any graded set.
    needs_graded: bool = True

    @property
    def rows(self) -> Tuple[str, ...]:
        """Every row the suite trains, in table order, without repeats."""
        seen: List[str] = []
        for table in self.tables:
            seen += [r for r in table.rows if r not in seen]
        return tuple(seen)


# The paper's numbers (Haloi et al. 2017, arXiv:1710.07991, Sec. III-A, Tables I-IV), in
# percent. It reports no QWK and no numbers for the ablations, and does not say whether its
# mIoU counts the background class: we put our mIoU *with* background (the usual
# definition) next to it and add mIoU without background (``_MIOU_NOTE``).
ROWS: Dict[str, Row] = {r.name: r for r in (
    Row("fcn8s_two_step", "FCN-8s (two-step)", {"miou": 55.3}),
    Row("unet_two_step", "UNet, inception blocks (two-step)", {"miou": 64.4}),
    Row("fcn8s_random_init", "FCN-8s (random init)", {"miou": 15.3}),
    Row("unet_random_init", "UNet, inception blocks (random init)", {"miou": 25.4}),
    Row("jointseg", "JointSeg [This work]", {"miou": 66.1}),
    Row("vgg19_classifier", "VGG-19",
        {"top1_accuracy": 82.5, "top2_accuracy": 85.3, "binary_accuracy": 89.5}),
    Row("inceptionv3_classifier", "InceptionV3",
        {"top1_accuracy": 84.3, "top2_accuracy": 87.2, "binary_accuracy": 94.7}),
    Row("jointseg_classifier", "JointSeg [This work]",
        {"top1_accuracy": 85.1, "top2_accuracy": 88.1, "binary_accuracy": 95.5}),
    Row("ablation_pag_none", "JointSeg, no PAG"),
    Row("ablation_pag_concat", "JointSeg, PAG concat"),
    Row("ablation_lr_ratio_1", "JointSeg, LR ratio 1"),
    Row("ablation_lr_ratio_10", "JointSeg, LR ratio 10"),
    Row("ablation_lr_ratio_30", "JointSeg, LR ratio 30 (paper)"),
    Row("ablation_batch_ratio_1", "JointSeg, batch ratio 1"),
    Row("ablation_batch_ratio_mid", "JointSeg, batch ratio mid"),
    Row("ablation_labels_20", "JointSeg, 20 % true grades"),
    Row("ablation_labels_0", "JointSeg, 0 % true grades"),
)}
# DecoupledNet's Table 1 (Hong et al. 2015): PASCAL VOC 2012 val mIoU with N strong
# (pixel) annotations per class, the rest of the training images weakly (image-level) labelled.
_DECOUPLEDNET_PAPER_MIOU = {
    ("DecoupledNet", "decouplednet"): {"full": 67.5, "25": 62.1, "10": 57.4, "5": 53.1},
    ("DecoupledNet-Str", "decouplednet_str"): {"full": 67.5, "25": 50.3, "10": 41.7, "5": 32.7},
    ("DeconvNet", "decouplednet_deconvnet"): {"full": 67.1, "25": 38.6, "10": 21.5, "5": 15.3},
}
ROWS.update({f"{prefix}_{n}": Row(f"{prefix}_{n}", f"{method}, {n} strong/class", {"miou": miou})
             for (method, prefix), cells in _DECOUPLEDNET_PAPER_MIOU.items()
             for n, miou in cells.items()})
_DECOUPLEDNET_ROWS = tuple(f"{prefix}_{n}"
                           for (_, prefix), cells in _DECOUPLEDNET_PAPER_MIOU.items()
                           for n in cells)
_DECOUPLEDNET_NOTE = (
    "Paper numbers: PASCAL VOC 2012 val, mIoU over 21 classes including background; ours: "
    "the same definition on our validation set. -Str trains both stages on the strong images "
    "only; DeconvNet is the encoder-decoder alone. Classifier mAP and recall (stage 1, on the "
    "validation images' image-level labels; recall at decoupled.score_threshold) bound "
    "DecoupledNet: a class scored below the threshold is never segmented. \"mIoU given true "
    "classes\" is a diagnostic, not the paper's inference: DecoupledNet's segmenter run for "
    "the classes each validation image really contains. Paper: Hong et al. 2015, Table 1: "
    "PASCAL VOC 2012 val, mIoU (%).")
HUMAN_BINARY_ACCURACY = 95.1  # Table IV, "Human Performance"

_SEG_COLUMNS = (Column("mIoU", "miou"), Column("mIoU w/o background", "miou_no_background"),
                Column("pixel accuracy", "pixel_accuracy"))
_TIME = Column("train time", "wall_time_s", kind="seconds")
_MIOU_NOTE = ("mIoU (ours) is the mean over all classes *including background*, computed "
              "from one confusion matrix over the whole validation set; it is what we put next "
              "to the paper's mIoU, which does not say whether it counts background. "
              "mIoU w/o background averages the lesion classes only.")


def _ablation(name: str, setting: str, header: str, rows: Tuple[str, ...],
              claims: Tuple[Claim, ...], description: str) -> Suite:
    columns = (Column(header, setting=setting, kind="value"),
               Column("mIoU", "miou"), Column("mIoU w/o background", "miou_no_background"),
               Column("mIoU at 1st validation", "first_eval_miou"),
               Column("top-1", "top1_accuracy"), Column("QWK", "quadratic_kappa", kind="kappa"),
               _TIME)
    note = ("The paper gives no numbers for this ablation; the scale's default setting is the "
            "`jointseg` row. mIoU includes background (see Table I); \"at 1st validation\" "
            "is the mIoU at the first validation step of the run (convergence speed).")
    return Suite(name, description,
                 (Table(description, rows, columns, note=note, paper_columns=False),), claims)


_SUITES: Tuple[Suite, ...] = (
    Suite("table1", "Table I: segmentation, baselines initialised from a grade classifier",
          (Table("Table I: mIoU on the segmentation validation set (two-step baselines)",
                 ("fcn8s_two_step", "unet_two_step", "jointseg"),
                 _SEG_COLUMNS + (Column("pre-training top-1 (stage 1)", "pretrain_top1_accuracy"),
                                 _TIME), note=_MIOU_NOTE),),
          (Claim("JointSeg mIoU > FCN-8s two-step", "Table I", "miou", "jointseg",
                 "fcn8s_two_step"),
           Claim("JointSeg mIoU > UNet two-step", "Table I", "miou", "jointseg", "unet_two_step"),
           Claim("UNet two-step mIoU > FCN-8s two-step", "Table I", "miou", "unet_two_step",
                 "fcn8s_two_step"))),
    Suite("table2", "Table II: segmentation, every model from random initialisation",
          (Table("Table II: mIoU with random parameter initialisation",
                 ("fcn8s_random_init", "unet_random_init", "jointseg"),
                 _SEG_COLUMNS + (_TIME,), note=_MIOU_NOTE),),
          (Claim("JointSeg mIoU > FCN-8s random init", "Table II", "miou", "jointseg",
                 "fcn8s_random_init"),
           Claim("JointSeg mIoU > UNet random init", "Table II", "miou", "jointseg",
                 "unet_random_init"),
           Claim("UNet random init mIoU > FCN-8s random init", "Table II", "miou",
                 "unet_random_init", "fcn8s_random_init"),
           Claim("FCN-8s needs pre-training: two-step mIoU > random init", "Tables I vs II",
                 "miou", "fcn8s_two_step", "fcn8s_random_init"),
           Claim("UNet needs pre-training: two-step mIoU > random init", "Tables I vs II",
                 "miou", "unet_two_step", "unet_random_init"))),
    Suite("table3", "Tables III/IV: grading accuracy of the classifiers",
          (Table("Table III: accuracy on the classification validation set",
                 ("vgg19_classifier", "inceptionv3_classifier", "jointseg_classifier"),
                 (Column("Top-1", "top1_accuracy"), Column("Top-2", "top2_accuracy"),
                  Column("QWK", "quadratic_kappa", kind="kappa"), _TIME),
                 note="The paper reports no quadratic weighted kappa; it is the Kaggle DR "
                      "metric and given for reference."),
           Table("Table IV: binary accuracy (grade >= 1 vs 0)",
                 ("vgg19_classifier", "inceptionv3_classifier", "jointseg_classifier"),
                 (Column("Binary accuracy", "binary_accuracy"),),
                 reference_rows=(("Human Performance",
                                  {"binary_accuracy": HUMAN_BINARY_ACCURACY}),),
                 note="The human number is the paper's ophthalmologist on EyePACS; it is not "
                      "a measurement on our data.")),
          tuple(Claim(f"JointSeg {label} > {other_label}", source, metric,
                      "jointseg_classifier", other)
                for metric, label, source in (("top1_accuracy", "top-1", "Table III"),
                                              ("top2_accuracy", "top-2", "Table III"),
                                              ("binary_accuracy", "binary accuracy", "Table IV"))
                for other, other_label in (("vgg19_classifier", "VGG-19"),
                                           ("inceptionv3_classifier", "InceptionV3")))
          + (Claim("InceptionV3 top-1 > VGG-19", "Table III", "top1_accuracy",
                   "inceptionv3_classifier", "vgg19_classifier"),
             Claim("JointSeg binary accuracy > human ophthalmologist (95.1 %, on EyePACS)",
                   "Table IV", "binary_accuracy", "jointseg_classifier",
                   relation="greater_than_value", value=HUMAN_BINARY_ACCURACY))),
    _ablation("ablation_pag", "model.pag_mode", "PAG mode",
              ("ablation_pag_none", "ablation_pag_concat", "jointseg"),
              (Claim("PAG (gated) raises mIoU over no PAG", "Sec. II-B", "miou", "jointseg",
                     "ablation_pag_none"),
               Claim("PAG (concat) raises mIoU over no PAG", "Sec. II-B", "miou",
                     "ablation_pag_concat", "ablation_pag_none"),
               Claim("PAG speeds convergence: mIoU at the first validation, gated > none",
                     "Sec. II-B", "first_eval_miou", "jointseg", "ablation_pag_none")),
              "Ablation: partial attention gate (none | concat | gated)"),
    _ablation("ablation_lr_ratio", "train.lr_ratio", "LR ratio (clf / seg)",
              ("ablation_lr_ratio_1", "ablation_lr_ratio_10", "ablation_lr_ratio_30",
               "jointseg"),
              # The paper's claim is about its ratio, 30, whatever the scale's default is
              # (the jointseg row: 30 at paper scale, 1.5 on the CPU scales).
              (Claim("The paper's LR ratio 30 beats ratio 1 in mIoU", "Sec. III (its choice)",
                     "miou", "ablation_lr_ratio_30", "ablation_lr_ratio_1"),
               Claim("The paper's LR ratio 30 beats ratio 10 in mIoU", "Sec. III (its choice)",
                     "miou", "ablation_lr_ratio_30", "ablation_lr_ratio_10"),
               Claim("The paper's LR ratio 30 gives a better classifier than ratio 1 (top-1)",
                     "Sec. III (its choice)", "top1_accuracy", "ablation_lr_ratio_30",
                     "ablation_lr_ratio_1")),
              "Ablation: classifier / segmentation learning-rate ratio"),
    _ablation("ablation_batch_ratio", "train.batch_ratio", "batch ratio (clf / seg)",
              ("ablation_batch_ratio_1", "ablation_batch_ratio_mid", "jointseg"),
              (Claim("A larger classifier batch helps segmentation: default ratio mIoU > ratio 1",
                     "Sec. III", "miou", "jointseg", "ablation_batch_ratio_1"),
               Claim("A larger classifier batch helps segmentation: default ratio mIoU > mid",
                     "Sec. III", "miou", "jointseg", "ablation_batch_ratio_mid"),
               Claim("A larger classifier batch speeds classifier learning: "
                     "top-1 default > ratio 1", "Sec. III", "top1_accuracy", "jointseg",
                     "ablation_batch_ratio_1")),
              "Ablation: classifier / segmentation batch-size ratio"),
    _ablation("ablation_labels", "data.clf_true_label_fraction", "true-grade fraction",
              ("ablation_labels_0", "ablation_labels_20", "jointseg"),
              (Claim("With 20 % true grades segmentation does not suffer (mIoU within 2 points)",
                     "Sec. II-C", "miou", "ablation_labels_20", "jointseg",
                     relation="not_worse", tolerance=2.0),
               Claim("With 20 % true grades the classifier's top-1 is lower", "Sec. II-C",
                     "top1_accuracy", "jointseg", "ablation_labels_20")),
              "Ablation: partial random labels for the classifier agent"),
    Suite("decouplednet_table1", "DecoupledNet (Hong et al. 2015) Table 1: semi-supervised "
          "segmentation with N strong annotations per class",
          (Table("DecoupledNet, Table 1: mIoU with N strong annotations per class",
                 _DECOUPLEDNET_ROWS, _SEG_COLUMNS + (
                     Column("mIoU given true classes (diagnostic)", "true_classes_miou"),
                     Column("classifier mAP (stage 1)", "classifier_map"),
                     Column("classifier recall at threshold", "classifier_recall"), _TIME),
                 note=_DECOUPLEDNET_NOTE),),
          # The orderings Table 1 shows at 25, 10 and 5 strong annotations per class.
          tuple(claim for n in ("25", "10", "5") for claim in (
              Claim(f"weak labels help: DecoupledNet > DecoupledNet-Str at {n} strong/class",
                    "Hong et al. 2015, Table 1", "miou", f"decouplednet_{n}",
                    f"decouplednet_str_{n}"),
              Claim(f"DecoupledNet > DeconvNet at {n} strong/class", "Hong et al. 2015, Table 1",
                    "miou", f"decouplednet_{n}", f"decouplednet_deconvnet_{n}"),
              Claim(f"the decoupled net alone helps: DecoupledNet-Str > DeconvNet at {n} "
                    "strong/class", "Hong et al. 2015, Table 1", "miou",
                    f"decouplednet_str_{n}", f"decouplednet_deconvnet_{n}"))),
          needs_graded=False),
)
SUITES: Dict[str, Suite] = {s.name: s for s in _SUITES}
ALL = "all"


def suite_names() -> Tuple[str, ...]:
    return tuple(SUITES) + (ALL,)


def get_suites(name: str) -> List[Suite]:
    """The suite called ``name`` (``all`` = every suite); ConfigError names the choices."""
    if name == ALL:
        return list(_SUITES)
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; choose one of: {', '.join(suite_names())}")
    return [SUITES[name]]


def row_stages(row: str, scale: str) -> List[Stage]:
    """The ordered stages of ``row`` at ``scale`` (fresh configs, names set, validated)."""
    # "<row>__masks<N>": the row on N mask images (the data-efficiency suite);
    # "<row>__real_<set-up>": the row at a working set-up (the real-data suite).
    base, mask_count = data_efficiency.split_variant(row)
    base, setup = real_lesions.split_variant(base)
    stages = get_stages(base, scale)
    if mask_count is not None:
        data_efficiency.apply_variant(stages, mask_count)
    if setup is not None:
        real_lesions.apply_variant(stages, real_lesions.setup_named(setup, scale), scale)
    for stage in stages:
        stage.config.name = f"{row}.{stage.name}" if len(stages) > 1 else row
        stage.config.validate()
    return stages


def claim_rows(suite: Suite) -> Tuple[str, ...]:
    """Rows the suite's claims compare, including rows of other suites (Tables I vs II)."""
    names = [c.a for c in suite.claims] + [c.b for c in suite.claims if c.b]
    return tuple(dict.fromkeys(names))
