"""Everything DESIGN §5 lists, for one trained system: ``coopseg-evaluate --report DIR``.

One pass over the segmentation validation set and one over the graded set collect:
- ``SegmentationConfusion`` and ``ClassificationMetrics`` (the same streaming metrics
  and the same predictions as ``coopseg.evaluation.evaluate_system``, so mIoU, top-1,
  QWK... are identical to ``coopseg-evaluate`` without ``--report``);
- per-class pixel-score histograms for per-lesion AUPR (``coopseg.pixel_ranking``);
- every image's grade probabilities and grade (N x G numbers: small);
- a per-image lesion Dice, keeping thumbnails of only the k worst and k best images.

Then it derives referable-DR (grade >= 2) sensitivity/specificity at a probability
threshold and ROC-AUC, any-DR (grade >= 1) ROC-AUC, draws the figures
(``coopseg.report_figures``) and writes ``metrics.json``, ``report.md`` and the PNGs
atomically, plus TensorBoard scalars and images.
"""
from __future__ import annotations

import heapq
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from coopseg import metrics_report as mr
from coopseg import pixel_ranking as pr
from coopseg import report_figures as rf
from coopseg.config import IGNORE_LABEL, ConfigError
from coopseg.metrics import ClassificationMetrics, SegmentationConfusion
from coopseg.multilabel_metrics import MultiLabelMetrics
from coopseg.progress import ProgressBar

REFERABLE_MIN_GRADE = 2
METRICS_FILE, MARKDOWN_FILE = "metrics.json", "report.md"
FIGURE_TITLES = {
    "pr_curves": "Per-lesion precision-recall curves",
    "segmentation_confusion": "Pixel confusion matrix",
    "segmentation_grid": "Worst and best segmentations",
    "roc": "Referable / any DR ROC",
    "grade_confusion": "Grade confusion matrix",
}


@dataclass
class ReportOptions:
    """Settings of a report (the CLI flags)."""
    referable_threshold: float = 0.5   # referable DR predicted when p(grade >= 2) >= this
    aupr_bins: int = pr.DEFAULT_BINS   # pixel-score bins per class for AUPR
    grid_images: int = 4               # k worst and k best segmentations shown
    max_batches: int = 0               # 0 = the whole validation sets
    curve_points: int = 200            # most points per curve stored in metrics.json

    def validate(self) -> "ReportOptions":
        if not 0.0 <= self.referable_threshold <= 1.0:
            raise ConfigError(f"--referable_threshold must be in [0, 1], got "
                              f"{self.referable_threshold}")
        if self.aupr_bins < 1:
            raise ConfigError(f"--aupr_bins must be >= 1, got {self.aupr_bins}")
        if self.grid_images < 0:
            raise ConfigError(f"--grid_images must be >= 0, got {self.grid_images}")
        if self.curve_points < 2:
            raise ConfigError(f"curve_points must be >= 2, got {self.curve_points}")
        return self


@dataclass
class Report:
    """What a report holds before it is written: JSON-safe metrics and RGB figures."""
    metrics: dict
    figures: Dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------
# Collection: the two passes.


@dataclass
class _Thumbnail:
    score: float
    index: int
    image: np.ndarray   # uint8 RGB
    truth: np.ndarray   # int class map (ignore label kept)
    prediction: np.ndarray


class ExtremeImages:
    """The k lowest- and k highest-scoring images seen, in bounded memory.

    Both ends use one total order, (score, index), so with at least 2k scored images
    the two sets are disjoint; with fewer, ``worst_and_best`` splits them in half.
    """

    def __init__(self, k: int):
        self.k = k
        self._best: List[Tuple[Tuple[float, int], _Thumbnail]] = []    # min-heap: k largest
        self._worst: List[Tuple[Tuple[float, int], _Thumbnail]] = []   # min-heap of negated keys

    def wants(self, score: float, index: int) -> bool:
        """Whether an image with this score would be kept (so its pixels are needed)."""
        if self.k == 0:
            return False
        key = (score, index)
        return (len(self._best) < self.k or key > self._best[0][0]
                or len(self._worst) < self.k or (-score, -index) > self._worst[0][0])

    def add(self, thumb: _Thumbnail) -> None:
        if self.k == 0:
            return
        for heap, key in ((self._best, (thumb.score, thumb.index)),
                          (self._worst, (-thumb.score, -thumb.index))):
            if len(heap) < self.k:
                heapq.heappush(heap, (key, thumb))
            elif key > heap[0][0]:
                heapq.heapreplace(heap, (key, thumb))

    def worst_and_best(self) -> Tuple[List[_Thumbnail], List[_Thumbnail]]:
        """(worst first, best first), disjoint."""
        kept = {t.index: t for _, t in self._best + self._worst}
        ranked = sorted(kept.values(), key=lambda t: (t.score, t.index))
        n_worst = min(self.k, (len(ranked) + 1) // 2)
        return ranked[:n_worst], ranked[n_worst:][::-1][:self.k]


def display_uint8(image: np.ndarray) -> np.ndarray:
    """A standardised float image as uint8 RGB, min-max rescaled (like
    ``visualize.to_display``)."""
    image = np.asarray(image, np.float32)
    lo, hi = float(image.min()), float(image.max())
    return np.clip(np.round((image - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)


def per_image_dice_terms(masks: tf.Tensor, predictions: tf.Tensor,
                         num_classes: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Per image, over valid pixels: (2 * |pred == truth, truth > 0|, |pred > 0| + |truth > 0|).

    Their ratio is the image's lesion Dice (every foreground class at once, a pixel
    counting only when the class matches); undefined when the denominator is 0.
    """
    masks = tf.cast(masks, tf.int32)
    valid = (masks >= 0) & (masks < num_classes)
    truth_fg = valid & (masks > 0)
    pred_fg = valid & (predictions > 0)
    hits = truth_fg & tf.equal(predictions, masks)
    count = lambda m: tf.reduce_sum(tf.cast(m, tf.float64), axis=[1, 2])  # noqa: E731
    return 2.0 * count(hits), count(pred_fg) + count(truth_fg)


class _Progress:
    """A ProgressBar when the number of batches is known; otherwise a batch counter
    printed at 1, 2, 4, 8, ... batches (validation sets that skip bad images have no
    known size)."""

    def __init__(self, dataset: tf.data.Dataset, desc: str, max_batches: int):
        total = int(dataset.cardinality().numpy())
        if max_batches > 0:
            total = min(total, max_batches) if total >= 0 else max_batches
        self.bar = ProgressBar(total, desc=desc, unit="batch") if total > 0 else None
        self.desc, self._next = desc, 1

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)
        elif count >= self._next:
            sys.stderr.write(f"{self.desc}: {count} batches\n")
            self._next *= 2

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _take(dataset: tf.data.Dataset, max_batches: int) -> tf.data.Dataset:
    return dataset.take(max_batches) if max_batches > 0 else dataset


def _segmentation_pass(system, dataset: tf.data.Dataset, class_names: Sequence[str],
                       options: ReportOptions) -> dict:
    num_classes = len(class_names)
    confusion = SegmentationConfusion(num_classes, ignore_label=IGNORE_LABEL,
                                      class_names=class_names)
    softmax = system.seg_predict is None
    histogram = (pr.PixelScoreHistogram(num_classes, options.aupr_bins, class_names=class_names)
                 if softmax else None)
    true_classes = (SegmentationConfusion(num_classes, ignore_label=IGNORE_LABEL,
                                          class_names=class_names)
                    if system.seg_predict_true_classes is not None else None)

    @tf.function
    def step(images, masks):
        if softmax:
            logits = system.seg_model(images, training=False)
            # Argmax of the logits, as evaluate_segmenter takes it: identical class maps.
            predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
            histogram.update_state(masks, tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1))
        else:
            predictions = tf.cast(system.seg_predict(images), tf.int32)
        confusion.update_state(masks, predictions)
        if true_classes is not None:
            true_classes.update_state(masks, system.seg_predict_true_classes(images, masks))
        twice_hits, denominator = per_image_dice_terms(masks, predictions, num_classes)
        return predictions, twice_hits, denominator

    extremes = ExtremeImages(options.grid_images)
    scores: List[float] = []
    undefined = index = batches = 0
    progress = _Progress(dataset, "segmentation", options.max_batches)
    for images, masks in _take(dataset, options.max_batches):
        predictions, twice_hits, denominator = step(images, masks)
        twice_hits, denominator = twice_hits.numpy(), denominator.numpy()
        fetched = None
        for i in range(len(denominator)):
            if denominator[i] > 0:
                score = float(twice_hits[i] / denominator[i])
                scores.append(score)
                if extremes.wants(score, index):
                    fetched = fetched or (images.numpy(), masks.numpy(), predictions.numpy())
                    extremes.add(_Thumbnail(score, index, display_uint8(fetched[0][i]),
                                            fetched[1][i], fetched[2][i]))
            else:
                undefined += 1
            index += 1
        batches += 1
        progress.update(batches)
    progress.close()
    return {"confusion": confusion, "histogram": histogram, "true_classes": true_classes,
            "extremes": extremes, "image_dice": np.asarray(scores), "undefined_dice": undefined,
            "num_images": index}


def _classification_pass(system, dataset: tf.data.Dataset, num_grades: int,
                         class_names: Sequence[str], options: ReportOptions) -> dict:
    grades_metrics = ClassificationMetrics(num_grades) if system.evaluate_grades else None
    labels_metrics = (MultiLabelMetrics(class_names[1:], system.image_label_threshold)
                      if system.image_label_threshold is not None else None)

    @tf.function
    def step(images, labels):
        logits = tf.cast(system.clf_model(images, training=False), tf.float32)
        if grades_metrics is not None:
            grades_metrics.update_state(labels, logits)   # logits, as evaluate_classifier
        return tf.nn.softmax(logits, axis=-1), tf.sigmoid(logits)

    probabilities, grades = [], []
    batches = 0
    progress = _Progress(dataset, "classification", options.max_batches)
    for images, labels in _take(dataset, options.max_batches):
        softmax, sigmoid = step(images, labels)
        if grades_metrics is not None:
            probabilities.append(softmax.numpy().astype(np.float64))
            grades.append(labels.numpy().reshape(-1))
        if labels_metrics is not None:
            labels_metrics.update_state(labels.numpy(), sigmoid.numpy())
        batches += 1
        progress.update(batches)
    progress.close()
    return {"metrics": grades_metrics, "image_labels": labels_metrics,
            "probabilities": (np.concatenate(probabilities) if probabilities
                              else np.zeros((0, num_grades))),
            "grades": np.concatenate(grades) if grades else np.zeros((0,), np.int64)}


# ----------------------------------------------------------------------------
# Summaries: numbers and curve points.


def subsample(arrays: Sequence[np.ndarray], max_points: int) -> List[np.ndarray]:
    """Every array at the same at most ``max_points`` evenly spaced indices, both ends kept."""
    n = len(arrays[0])
    if n <= max_points:
        return [np.asarray(a) for a in arrays]
    keep = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))
    return [np.asarray(a)[keep] for a in arrays]


def _mean_defined(values: Sequence[float]) -> float:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _aupr_summary(histogram: pr.PixelScoreHistogram, class_names: Sequence[str],
                  max_points: int) -> dict:
    counts = histogram.counts()
    aupr, bound, curves, positives = {}, {}, {}, {}
    for c, name in enumerate(class_names[1:], start=1):
        hist = counts[c - 1]
        aupr[name] = pr.histogram_average_precision(hist)
        bound[name] = pr.binning_error_bound(hist)
        positives[name] = int(hist[:, 1].sum())
        if positives[name] > 0:
            precision, recall, thresholds = pr.histogram_precision_recall_curve(hist)
            # thresholds has one entry fewer (the end point); pad it with None.
            precision, recall, thresholds = subsample(
                [precision, recall, np.r_[thresholds, np.nan]], max_points)
            curves[name] = {"precision": precision, "recall": recall, "threshold": thresholds}
        else:
            curves[name] = None
    return mr.to_jsonable({"aupr": aupr, "mean_aupr": _mean_defined(list(aupr.values())),
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


def _thumb_json(thumbs: Sequence[_Thumbnail]) -> List[dict]:
    return [{"index": t.index, "dice": t.score} for t in thumbs]


def _segmentation_metrics(seg: dict, system, class_names: Sequence[str],
                          options: ReportOptions) -> dict:
    out = seg["confusion"].result_dict()
    out["num_images"] = seg["num_images"]
    if seg["histogram"] is not None:
        out.update(_aupr_summary(seg["histogram"], class_names, options.curve_points))
        out["aupr_bins"] = options.aupr_bins
    else:
        out["aupr"] = None
        out["aupr_unavailable"] = (
            f"method {system.method!r} does not segment by a per-pixel softmax of its "
            "segmentation model (its class map comes from seg_predict), so there is no "
            "pixel score to rank")
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
    """Run the passes the system and data allow; return the metrics and figures."""
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
        seg = _segmentation_pass(system, seg_val, class_names, options)
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
        clf = _classification_pass(system, clf_val, num_grades, class_names, options)
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
    from coopseg.visualize import add_legend, overlay_rgb
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


# ----------------------------------------------------------------------------
# Output: report.md, metrics.json, PNGs (atomically) and TensorBoard.


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "undefined"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_num(v) if not isinstance(v, str) else v for v in row) + " |"
              for row in rows]
    return lines + [""]


def _figure(lines: List[str], figures: Dict[str, np.ndarray], name: str) -> None:
    if name in figures:
        lines += [f"![{FIGURE_TITLES[name]}]({name}.png)", ""]


def render_markdown(report: Report) -> str:
    """``report.md``: tables, the figures by relative path, and how it was computed."""
    m, figures = report.metrics, report.figures
    run, settings = m.get("run", {}), m["settings"]
    lines = [f"# Evaluation report: {run.get('name', settings['method'])}", ""]
    if run:
        lines += [f"Method `{run.get('method')}`, run `{run.get('model_dir')}`, checkpoint "
                  f"`{run.get('checkpoint')}` (step {run.get('step')}).", ""]
    for section, reason in m["unavailable"].items():
        lines.append(f"- **{section}**: not reported — {reason}.")
    if m["unavailable"]:
        lines.append("")

    seg = m.get("segmentation")
    if seg:
        lines += ["## Segmentation", "", f"{seg['num_images']} validation images.", ""]
        aupr = seg.get("aupr") or {}
        background = settings["class_names"][0]
        rows = [[name, seg["iou"][name], seg["dice"][name],
                 "- (not a lesion)" if name == background else aupr.get(name)]
                for name in settings["class_names"]]
        lines += _md_table(["class", "IoU", "Dice", "AUPR"], rows)
        lines += _md_table(["summary", "value"], [
            ["mIoU (with background)", seg["miou"]],
            ["mIoU (lesions only)", seg["miou_no_background"]],
            ["mean Dice (with background)", seg["mean_dice"]],
            ["mean Dice (lesions only)", seg["mean_dice_no_background"]],
            ["mean AUPR (lesions)", seg.get("mean_aupr")],
            ["pixel accuracy", seg["pixel_accuracy"]],
            ["per-image lesion Dice, mean", seg["per_image_dice"]["mean"]],
            ["per-image lesion Dice, median", seg["per_image_dice"]["median"]]])
        if seg.get("aupr_unavailable"):
            lines += [f"AUPR unavailable: {seg['aupr_unavailable']}.", ""]
        for name in ("pr_curves", "segmentation_confusion", "segmentation_grid"):
            _figure(lines, figures, name)
    true_classes = m.get("segmentation_true_classes")
    if true_classes:
        lines += ["### With the true image-level classes (diagnostic)", ""]
        lines += _md_table(["summary", "value"], [["mIoU", true_classes["miou"]],
                                                  ["mIoU (no background)",
                                                   true_classes["miou_no_background"]]])

    clf = m.get("classification")
    if clf:
        lines += ["## DR grading", "", f"{clf['count']} validation images.", ""]
        lines += _md_table(["metric", "value"], [
            ["top-1 accuracy", clf["top1_accuracy"]], ["top-2 accuracy", clf["top2_accuracy"]],
            ["binary accuracy (grade >= 1 vs 0, argmax)", clf["binary_accuracy"]],
            ["quadratic weighted kappa", clf["quadratic_kappa"]]])
        ref, any_dr = clf.get("referable_dr"), clf.get("any_dr")
        if ref:
            lines += [f"### Referable DR (grade >= {ref['min_grade']})", ""]
            lines += _md_table(["metric", "value"], [
                [f"sensitivity at p >= {ref['threshold']:g}", ref["sensitivity"]],
                [f"specificity at p >= {ref['threshold']:g}", ref["specificity"]],
                ["ROC-AUC", ref["roc_auc"]], ["positives / negatives",
                                              f"{ref['positives']} / {ref['negatives']}"],
                ["TP / FP / TN / FN", f"{ref['true_positives']} / {ref['false_positives']} / "
                                      f"{ref['true_negatives']} / {ref['false_negatives']}"],
                ["any DR (grade >= 1) ROC-AUC", any_dr["roc_auc"] if any_dr else None]])
        for name in ("roc", "grade_confusion"):
            _figure(lines, figures, name)
    labels = m.get("image_labels")
    if labels:
        lines += ["## Image-level labels", ""]
        lines += _md_table(["metric", "value"], [
            ["mAP", labels["map"]], ["precision", labels["precision"]],
            ["recall", labels["recall"]], ["F1", labels["f1"]]])
    lines += _how_computed(settings)
    return "\n".join(lines) + "\n"


def _how_computed(settings: dict) -> List[str]:
    bins = settings["aupr_bins"]
    return [
        "## How these were computed", "",
        "- IoU, Dice and mIoU come from one pixel confusion matrix accumulated over the whole "
        "validation set (not a mean of per-image values); labels outside the classes (255) "
        "are ignored. The prediction is the argmax class.",
        f"- Per-lesion AUPR (IDRiD's metric): every valid pixel ranked by its softmax "
        f"probability of the lesion, positives = pixels of that lesion. Scores are binned "
        f"into {bins} equal bins and pixels in one bin form one threshold (as tied scores "
        "do); `aupr_binning_error_bound` in metrics.json bounds the difference to an exact "
        "sort. Step-wise area, no interpolation (scikit-learn's average precision). The "
        "mean is over the foreground classes with a positive pixel.",
        "- Per-image lesion Dice ranks the worst and best segmentations: 2 x pixels where "
        "prediction = truth > 0, over predicted + true lesion pixels; images with neither "
        "are undefined and not ranked.",
        "- Grades: top-1/top-2 from the grade scores, binary accuracy = argmax >= 1 vs grade "
        ">= 1, quadratic weighted kappa on the argmax grade.",
        f"- Referable DR = grade >= {settings['referable_min_grade']}, scored by p(grade >= "
        f"{settings['referable_min_grade']}) = the sum of those softmax probabilities; "
        f"predicted referable when that is >= {settings['referable_threshold']:g}. ROC-AUC "
        "counts a tied positive/negative pair as 1/2. Any DR uses p(grade >= 1).",
        "- *undefined* (null in metrics.json): a class absent from truth and prediction has "
        "no IoU/Dice; AUPR needs a positive pixel; sensitivity needs a positive and "
        "specificity a negative; ROC-AUC needs both. Means skip undefined values.",
        "- Curves in metrics.json and the figures are subsampled to at most "
        f"{settings['curve_points']} points; the areas use every point.", ""]


def check_report_dir(out_dir: str) -> None:
    """Refuse to replace a directory that is not an earlier report (e.g. the run itself)."""
    if not out_dir:
        raise ConfigError("--report needs a directory")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"--report={out_dir} exists and is not a directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        names = set(os.listdir(out_dir))
        if not {METRICS_FILE, MARKDOWN_FILE} <= names or "checkpoints" in names:
            raise ConfigError(f"--report={out_dir} exists and is not an earlier coopseg report "
                              f"(no {METRICS_FILE} and {MARKDOWN_FILE}); refusing to replace it")


def write_report(report: Report, out_dir: str, run: Optional[dict] = None) -> List[str]:
    """Write metrics.json, report.md and the PNGs to ``out_dir`` atomically: everything
    goes to a temporary directory beside it, which then replaces ``out_dir`` (an earlier
    report there is replaced whole). Returns the written paths."""
    out_dir = os.path.abspath(out_dir)
    check_report_dir(out_dir)
    if run is not None:
        report.metrics = {"run": mr.to_jsonable(run), **report.metrics}
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".report-", dir=parent)
    old = None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the report from colleagues
        names = []
        for name, rgb in report.figures.items():
            rf.write_png(os.path.join(tmp, f"{name}.png"), rgb)
            names.append(f"{name}.png")
        with open(os.path.join(tmp, METRICS_FILE), "w") as f:
            json.dump(report.metrics, f, indent=2, allow_nan=False)
        with open(os.path.join(tmp, MARKDOWN_FILE), "w") as f:
            f.write(render_markdown(report))
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=".report-old-", dir=parent)
            os.replace(out_dir, os.path.join(old, "report"))
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(out_dir):
            os.replace(os.path.join(old, "report"), out_dir)   # put the earlier report back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return [os.path.join(out_dir, n) for n in [METRICS_FILE, MARKDOWN_FILE] + names]


def headline(metrics: dict) -> Dict[str, dict]:
    """The scalar metrics, grouped one level deep (for the CLI table and TensorBoard):
    per-class dicts of numbers are kept, lists and curves are left to metrics.json."""
    out: Dict[str, dict] = {}
    for group in ("segmentation", "segmentation_true_classes", "classification",
                  "image_labels"):
        values = metrics.get(group)
        if not values:
            continue
        flat: dict = {}
        for key, value in values.items():
            if key in ("referable_dr", "any_dr") and isinstance(value, dict):
                for k, v in value.items():
                    if not isinstance(v, (dict, list)):
                        flat[f"{key}/{k}"] = v
            elif isinstance(value, dict) and all(not isinstance(v, (dict, list))
                                                 for v in value.values()):
                flat[key] = value
            elif not isinstance(value, (dict, list, str)):
                flat[key] = value
        out[group] = flat
    return out


def log_to_tensorboard(report: Report, logdir: str, step: int) -> None:
    """Headline scalars under ``evaluation/...``, each figure as an image, and report.md
    as text, at ``step`` (the checkpoint's training step)."""
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=step):
        for group, values in headline(report.metrics).items():
            for key, value in values.items():
                items = value.items() if isinstance(value, dict) else [(None, value)]
                for sub, v in items:
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None:
                        name = "/".join(p for p in ("evaluation", group, key, sub) if p)
                        tf.summary.scalar(name, float(v))
        for name, rgb in report.figures.items():
            tf.summary.image(f"evaluation/{name}", rgb[None], max_outputs=1)
        tf.summary.text("evaluation/report", render_markdown(report))
    writer.flush()
    writer.close()


def checkpoint_step(model_dir: str) -> Tuple[Optional[str], int]:
    """(latest checkpoint path, its training step from the ``ckpt-<step>`` name; 0 if
    there is none or the name carries no number)."""
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if latest is None:
        return None, 0
    suffix = os.path.basename(latest).rsplit("-", 1)[-1]
    return latest, int(suffix) if suffix.isdigit() else 0
