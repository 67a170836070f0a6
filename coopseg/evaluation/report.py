"""The full evaluation report of one trained system: ``coopseg-evaluate --report DIR``.

``build_report`` derives the metrics and figures; ``coopseg.evaluation.report_output``
writes them. What a report holds and how each number is computed: docs/serving.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from coopseg.evaluation import figures as rf
from coopseg.evaluation import metric_tables as mr
from coopseg.evaluation import pixel_ranking as pr
from coopseg.evaluation.passes import (ReportOptions, Thumbnail, classification_pass,
                                       segmentation_pass)
from coopseg.evaluation.visualize import add_legend, overlay_rgb

REFERABLE_MIN_GRADE = mr.REFERABLE_MIN_GRADE


@dataclass
class Report:
    """What a report holds before it is written: JSON-safe metrics and RGB figures."""
    metrics: dict
    figures: Dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------
# Summaries: numbers and curve points.


def subsample(arrays: Sequence[np.ndarray], max_points: int) -> List[np.ndarray]:
    """Every array at the same at most ``max_points`` evenly spaced indices, both ends kept."""
    n = len(arrays[0])
    if n <= max_points:
        return [np.asarray(a) for a in arrays]
    keep = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))
    return [np.asarray(a)[keep] for a in arrays]


def _aupr_summary(histogram: pr.PixelScoreHistogram, class_names: Sequence[str],
                  max_points: int) -> dict:
    aupr, bound, curves, positives = {}, {}, {}, {}
    for c, name in enumerate(class_names[1:], start=1):
        ranking = histogram.class_ranking(c)
        aupr[name] = ranking.average_precision()
        bound[name] = ranking.error_bound()
        positives[name] = int(ranking.counts[:, 1].sum())
        if positives[name] > 0:
            precision, recall, thresholds = ranking.precision_recall_curve()
            # thresholds has one entry fewer (the end point); pad it with None.
            precision, recall, thresholds = subsample(
                [precision, recall, np.r_[thresholds, np.nan]], max_points)
            curves[name] = {"precision": precision, "recall": recall, "threshold": thresholds}
        else:
            curves[name] = None
    return mr.to_jsonable({"aupr": aupr, "mean_aupr": mr.mean_defined(list(aupr.values())),
                           "aupr_binning_error_bound": bound, "positive_pixels": positives,
                           "pr_curves": curves})


def _binary_ranking(truth: np.ndarray, scores: np.ndarray, max_points: int) -> dict:
    """ROC-AUC and the ROC curve of one binary split; None where undefined."""
    out = {"positives": int(truth.sum()), "negatives": int((~truth).sum())}
    if out["positives"] == 0 or out["negatives"] == 0:
        out.update(roc_auc=None, roc_curve=None)
        return out
    fpr, tpr, thresholds = mr.roc_curve(truth, scores)
    fpr, tpr, thresholds = subsample([fpr, tpr, thresholds], max_points)
    out.update(roc_auc=mr.roc_auc(truth, scores),
               roc_curve={"fpr": fpr, "tpr": tpr, "threshold": thresholds})
    return mr.to_jsonable(out)


def referable_dr(probabilities: np.ndarray, grades: np.ndarray, threshold: float,
                 max_points: int = 200, min_grade: int = REFERABLE_MIN_GRADE) -> dict:
    """Referable DR (grade >= ``min_grade``) scored by p(grade >= min_grade): counts,
    sensitivity/specificity of ``p >= threshold``, ROC-AUC and ROC points."""
    scores = mr.grade_at_least_probability(probabilities, min_grade)
    truth = np.asarray(grades) >= min_grade
    decision = scores >= threshold
    sensitivity, specificity = mr.sensitivity_specificity(truth, decision)
    out = _binary_ranking(truth, scores, max_points)
    out.update(min_grade=min_grade, threshold=threshold, sensitivity=sensitivity,
               specificity=specificity, true_positives=int((truth & decision).sum()),
               false_positives=int((~truth & decision).sum()),
               true_negatives=int((~truth & ~decision).sum()),
               false_negatives=int((truth & ~decision).sum()))
    return mr.to_jsonable(out)


def _thumb_json(thumbs: Sequence[Thumbnail]) -> List[dict]:
    return [{"index": t.index, "dice": t.score} for t in thumbs]


def _segmentation_metrics(seg: dict, system, class_names: Sequence[str],
                          options: ReportOptions) -> dict:
    out = seg["confusion"].result_dict()
    out["num_images"] = seg["num_images"]
    out["resolution"] = seg["resolution"]
    if seg["histogram"] is not None:
        out.update(_aupr_summary(seg["histogram"], class_names, options.curve_points))
        out["aupr_bins"] = options.aupr_bins
    else:
        out["aupr"] = None
        out["aupr_unavailable"] = (
            f"method {system.method!r} does not segment by a per-pixel softmax of its "
            "segmentation model (its class map comes from its own predict_classes), so "
            "there is no pixel score to rank")
    worst, best = seg["extremes"].worst_and_best()
    dice = seg["image_dice"]
    out["per_image_dice"] = mr.to_jsonable({
        "scored_images": int(dice.size), "undefined_images": seg["undefined_dice"],
        "mean": float(dice.mean()) if dice.size else None,
        "median": float(np.median(dice)) if dice.size else None,
        "worst": _thumb_json(worst), "best": _thumb_json(best)})
    return out


def _classification_metrics(clf: dict, num_grades: int, options: ReportOptions,
                            unavailable: Dict[str, str]) -> dict:
    out = clf["metrics"].result_dict()
    probabilities, grades = clf["probabilities"], clf["grades"]
    if len(grades) == 0:
        unavailable["referable_dr"] = "no graded validation image"
    elif num_grades < 3:
        unavailable["referable_dr"] = (f"referable DR is grade >= {REFERABLE_MIN_GRADE}; this "
                                       f"run has {num_grades} grades")
    else:
        out["referable_dr"] = referable_dr(probabilities, grades, options.referable_threshold,
                                           options.curve_points)
    if len(grades):
        any_dr = _binary_ranking(grades >= 1, mr.grade_at_least_probability(probabilities, 1),
                                 options.curve_points)
        out["any_dr"] = {"min_grade": 1, **any_dr}
    return out


def build_report(system, clf_val: Optional[tf.data.Dataset], seg_val: Optional[tf.data.Dataset],
                 num_grades: int, class_names: Sequence[str],
                 options: Optional[ReportOptions] = None) -> Report:
    """Run the passes the system and data allow; return the metrics and figures.

    The passes (``coopseg.evaluation.passes``) give the same streaming metrics and
    predictions as ``evaluate.evaluate_system``, plus pixel-score histograms, grade
    probabilities and per-image lesion Dice. From them: per-lesion AUPR and PR curves,
    referable-DR (grade >= 2) sensitivity/specificity at a probability threshold and
    ROC-AUC, any-DR (grade >= 1) ROC-AUC, and the figures (``figures``).
    """
    options = (options or ReportOptions()).validate()
    class_names = tuple(class_names)
    metrics: dict = {"settings": mr.to_jsonable({
        "referable_threshold": options.referable_threshold,
        "referable_min_grade": REFERABLE_MIN_GRADE, "aupr_bins": options.aupr_bins,
        "grid_images": options.grid_images, "max_batches": options.max_batches,
        "curve_points": options.curve_points, "class_names": list(class_names),
        "num_grades": num_grades, "method": system.method})}
    unavailable: Dict[str, str] = {}
    figures: Dict[str, np.ndarray] = {}

    if system.seg_model is None:
        unavailable["segmentation"] = f"method {system.method!r} has no segmentation head"
    elif seg_val is None:
        unavailable["segmentation"] = "no mask validation data (--masks_val)"
    else:
        seg = segmentation_pass(system, seg_val, class_names, options)
        metrics["segmentation"] = _segmentation_metrics(seg, system, class_names, options)
        if seg["true_classes"] is not None:
            metrics["segmentation_true_classes"] = seg["true_classes"].result_dict()
        if "aupr_unavailable" in metrics["segmentation"]:
            unavailable["aupr"] = metrics["segmentation"]["aupr_unavailable"]
        figures.update(_segmentation_figures(metrics["segmentation"], seg, class_names))

    if system.clf_model is None:
        unavailable["classification"] = f"method {system.method!r} has no classification head"
    elif clf_val is None:
        unavailable["classification"] = "no graded validation data (--graded_val)"
    else:
        clf = classification_pass(system, clf_val, num_grades, class_names, options)
        if clf["metrics"] is not None:
            metrics["classification"] = _classification_metrics(clf, num_grades, options,
                                                                 unavailable)
            figures.update(_classification_figures(metrics["classification"], num_grades))
        else:
            unavailable["classification"] = (f"method {system.method!r} is a multi-label "
                                             "classifier: grades are not scored (see image_labels)")
        if clf["image_labels"] is not None:
            metrics["image_labels"] = clf["image_labels"].result_dict()
    metrics["unavailable"] = unavailable
    return Report(metrics=metrics, figures=figures)


# ----------------------------------------------------------------------------
# Figures.


def _segmentation_figures(seg: dict, collected: dict, class_names: Sequence[str]) -> dict:
    figures = {}
    if seg.get("pr_curves"):
        curves = []
        for name in class_names[1:]:
            points, value = seg["pr_curves"][name], seg["aupr"][name]
            if points is None:
                curves.append(rf.Curve(f"{name}: no positive pixel", [], []))
            else:
                curves.append(rf.Curve(f"{name} AUPR={value:.3f}", points["recall"],
                                       points["precision"]))
        figures["pr_curves"] = rf.line_chart(curves, "Per-lesion precision-recall (pixels)",
                                             "recall", "precision")
    figures["segmentation_confusion"] = rf.confusion_heatmap(
        seg["confusion_matrix"], class_names, class_names, "Pixel confusion (rows: truth)")
    worst, best = collected["extremes"].worst_and_best()
    if worst or best:
        num_classes = len(class_names)
        rows, captions = [], []
        for label, thumbs in (("worst", worst), ("best", best)):
            for rank, t in enumerate(thumbs, start=1):
                rows.append([t.image, overlay_rgb(t.image, t.truth, num_classes),
                             overlay_rgb(t.image, t.prediction, num_classes)])
                captions.append(f"{label} {rank}: validation image #{t.index}, "
                                f"lesion Dice {t.score:.3f}")
        grid = rf.image_grid(rows, captions, ("image", "truth", "prediction"),
                             "Worst and best segmentations (per-image lesion Dice)")
        figures["segmentation_grid"] = add_legend(
            grid, [(name, i) for i, name in enumerate(class_names) if i > 0], num_classes,
            title="classes")
    return figures


def _classification_figures(clf: dict, num_grades: int) -> dict:
    labels = [str(g) for g in range(num_grades)]
    figures = {"grade_confusion": rf.confusion_heatmap(
        clf["confusion_matrix"], labels, labels, "DR grade confusion (rows: truth)",
        xlabel="predicted grade (argmax)", ylabel="true grade")}
    curves, markers = [], []
    ref, any_dr = clf.get("referable_dr"), clf.get("any_dr")
    if ref and ref.get("roc_curve"):
        curves.append(rf.Curve(f"referable (>=2) AUC={ref['roc_auc']:.3f}",
                               ref["roc_curve"]["fpr"], ref["roc_curve"]["tpr"]))
        if ref["sensitivity"] is not None and ref["specificity"] is not None:
            markers.append(rf.Marker(f"p(>=2) >= {ref['threshold']:g}: sens "
                                     f"{ref['sensitivity']:.2f}, spec {ref['specificity']:.2f}",
                                     1.0 - ref["specificity"], ref["sensitivity"]))
    if any_dr and any_dr.get("roc_curve"):
        curves.append(rf.Curve(f"any DR (>=1) AUC={any_dr['roc_auc']:.3f}",
                               any_dr["roc_curve"]["fpr"], any_dr["roc_curve"]["tpr"]))
    if curves:
        curves.append(rf.Curve("chance", [0, 1], [0, 1], colour=(150, 150, 150), dashed=True))
        figures["roc"] = rf.line_chart(curves, "DR ROC (images)", "1 - specificity",
                                       "sensitivity", markers=markers)
    return figures


