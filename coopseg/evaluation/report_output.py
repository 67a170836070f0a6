"""Writing an evaluation report: ``report.md``, ``metrics.json`` and the PNGs
(atomically), and the same numbers and figures to TensorBoard."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.evaluation import figures as rf
from coopseg.evaluation import metric_tables as mr
from coopseg.evaluation import pixel_ranking as pr
from coopseg.evaluation.report import Report
from coopseg.utils.tables import markdown_table
from data_pipelines.atomic_dir import write_directory_atomically

METRICS_FILE, MARKDOWN_FILE = "metrics.json", "report.md"
FIGURE_TITLES = {
    "pr_curves": "Per-lesion precision-recall curves",
    "segmentation_confusion": "Pixel confusion matrix",
    "segmentation_grid": "Worst and best segmentations",
    "roc": "Referable / any DR ROC",
    "grade_confusion": "Grade confusion matrix",
}


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> List[str]:
    cells = [[v if isinstance(v, str) else mr.format_metric(v) for v in row] for row in rows]
    return markdown_table(header, cells) + [""]


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
        lines += ["## Segmentation", "",
                  f"{seg['num_images']} validation images{_resolution_text(seg)}.", ""]
        aupr = seg.get("aupr") or {}
        background = settings["class_names"][0]
        bounds = seg.get("aupr_binning_error_bound") or {}
        rows = [[name, seg["iou"][name], seg["dice"][name],
                 "- (not a lesion)" if name == background
                 else _aupr_cell(aupr.get(name), bounds.get(name))]
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


def _resolution_text(seg: dict) -> str:
    """`` at 768 x 768 px, by tiles of 256 px`` (or without the tiles): where measured."""
    resolution = seg.get("resolution")
    if not resolution:
        return ""
    height, width = resolution["image_px"]
    tiles = (f", segmented whole by tiles of {resolution['model_input_px']} px"
             if resolution.get("tiled") else "")
    return f" at {height} x {width} px{tiles}"


# An AUPR whose binning error bound exceeds this is printed with its bound.
AUPR_BOUND_SHOWN = 0.005


def _aupr_cell(value, bound):
    """An AUPR for a table: the number, and ``± bound`` when binning leaves more than
    ``AUPR_BOUND_SHOWN`` uncertain (``aupr_binning_error_bound``)."""
    if value is None or bound is None or not bound > AUPR_BOUND_SHOWN:
        return value
    return f"{value:.3f} ± {bound:.3f} (binning)"


def _how_computed(settings: dict) -> List[str]:
    bins = settings["aupr_bins"]
    return [
        "## How these were computed", "",
        "- IoU, Dice and mIoU come from one pixel confusion matrix accumulated over the whole "
        "validation set (not a mean of per-image values); labels outside the classes (255) "
        "are ignored. The prediction is the argmax class.",
        f"- Per-lesion AUPR (IDRiD's metric): every valid pixel ranked by its softmax "
        f"probability of the lesion, positives = pixels of that lesion. The "
        f"{pr.DEFAULT_EXACT_TOP} highest-scoring pixels of each lesion are ranked exactly; "
        f"the rest are binned into {bins} bins equal in logit(p), and pixels in one bin form "
        "one threshold (as tied scores do); `aupr_binning_error_bound` in metrics.json "
        "bounds the difference to an exact sort (a bin of equal scores is exact), and the "
        "table shows it beside "
        f"an AUPR when it exceeds {AUPR_BOUND_SHOWN}. Step-wise area, no interpolation "
        "(scikit-learn's average precision). The mean is over the foreground classes with "
        "a positive pixel.",
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
    report there is replaced whole; ``data_pipelines.atomic_dir``). Returns the paths."""
    out_dir = os.path.abspath(out_dir)
    check_report_dir(out_dir)
    if run is not None:
        report.metrics = {"run": mr.to_jsonable(run), **report.metrics}
    names = [METRICS_FILE, MARKDOWN_FILE] + [f"{name}.png" for name in report.figures]

    def write(tmp: Path) -> dict:
        for name, rgb in report.figures.items():
            rf.write_png(str(tmp / f"{name}.png"), rgb)
        (tmp / MARKDOWN_FILE).write_text(render_markdown(report), encoding="utf-8")
        return report.metrics  # written as METRICS_FILE

    write_directory_atomically(Path(out_dir), METRICS_FILE, write)
    return [os.path.join(out_dir, n) for n in names]


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
