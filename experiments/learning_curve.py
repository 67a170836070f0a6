"""Run the data-efficiency suite and report it: the learning curves, paired differences
with the segmenter alone over seeds, a verdict per mask-set size, a figure, TensorBoard.

    python -m experiments.run --suite=data_efficiency --scale=small --seeds=0,1,2

Numbers per cell are mean ± std over seeds; ``verdict`` explains the verdicts.
"""
from __future__ import annotations

import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from coopseg.evaluation.figures import Curve, line_chart, write_png
from coopseg.utils.atomic_write import write_json_atomically, write_text_atomically
from coopseg.utils.tables import markdown_table
from experiments import data_efficiency as de
from experiments.results import format_seconds, mean_std, row_metrics

# Two-sided 95 % Student-t critical values by degrees of freedom (no SciPy dependency).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
# The verdicts use lesion mIoU (mIoU without background); mean lesion AUPR is reported
# beside it.
PRIMARY = "lesion_miou"
METRICS: Tuple[Tuple[str, str], ...] = (
    ("lesion_miou", "lesion mIoU"), ("mean_lesion_aupr", "mean lesion AUPR"),
    ("miou", "mIoU (with background)"), ("top1_accuracy", "grading top-1"),
    ("quadratic_kappa", "grading QWK"), ("referable_roc_auc", "referable-DR ROC-AUC"))
# "Converges faster" (paper Sec. II-B) as steps to reach this fraction of the
# segmenter-alone's final lesion mIoU at the same N.
REACH_FRACTION = 0.9


def t95(df: int) -> float:
    """Two-sided 95 % critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("an interval needs at least two seeds")
    known = [k for k in sorted(_T95) if k <= df]
    return _T95[known[-1]] if df <= 30 else 1.96


def paired_difference(a: Sequence[Optional[float]], b: Sequence[Optional[float]]) -> dict:
    """Mean of ``a - b`` over the pairs where both exist, with its 95 % t-interval."""
    diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
    if not diffs:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    half = t95(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(diffs)}


def verdict(diff: dict) -> str:
    """helps / hurts / within noise, from a paired difference's interval.

    Each row is compared with ``jointseg_seg_only`` *per seed* (same seed, same mask
    subset, same validation sets): the paired difference's mean and its 95 % t-interval
    over seeds decide. "helps" when the whole interval is above 0, "hurts" when below,
    "within noise" when it contains 0; a single seed gets no interval and no verdict.
    """
    if diff["n"] == 0:
        return "not run"
    if diff["low"] is None:
        return "one seed: no verdict"
    if diff["low"] > 0:
        return "helps"
    if diff["high"] < 0:
        return "hurts"
    return "within noise"


def seed_metrics(seed_record: dict) -> Dict[str, Optional[float]]:
    """The numbers of one seed of one row at one N (fractions; None if missing)."""
    base = row_metrics(seed_record)
    out = {"lesion_miou": base.get("miou_no_background"), "miou": base.get("miou"),
           "top1_accuracy": base.get("top1_accuracy"),
           "quadratic_kappa": base.get("quadratic_kappa"),
           "wall_time_s": base.get("wall_time_s")}
    final = (seed_record.get("stages") or [{}])[-1]
    report = final.get("report") or {}
    out["mean_lesion_aupr"] = report.get("mean_lesion_aupr")
    out["referable_roc_auc"] = report.get("referable_roc_auc")
    return out


def lesion_curve(seed_record: dict) -> List[Tuple[int, float]]:
    """(step, lesion mIoU) at every validation of the row's final stage."""
    if seed_record.get("status") != "ok":
        return []
    final = seed_record["stages"][-1]
    return [(int(s), float(v)) for s, v in
            final.get("curve", {}).get("segmentation/miou_no_background", [])]


def steps_to_reach(curve: Sequence[Tuple[int, float]], target: float) -> Optional[int]:
    """The first validated step whose value is at least ``target`` (None: never)."""
    return next((step for step, value in curve if value >= target), None)


# ------------------------------------------------------------------------------ run
def run(runner, counts: Sequence[int], base_rows: Sequence[str] = (),
        train: bool = True) -> dict:
    """Train every row at every N, seed by seed (a whole one-seed curve first), then
    write the results into ``<out>/data_efficiency/``. ``train=False`` only reports
    the stages that have finished."""
    bases = list(base_rows) or [r for r, _ in de.BASE_ROWS]
    if de.REFERENCE_ROW not in bases:
        bases.insert(0, de.REFERENCE_ROW)  # every verdict is relative to it
    names = de.rows(counts, bases)
    seeds = list(runner.seeds)
    try:
        for s, seed in enumerate(seeds if train else [], 1):
            runner.seeds = [seed]
            for i, row in enumerate(names, 1):
                runner.row(row, train=True,
                           progress=f"[{de.NAME} seed {seed} ({s}/{len(seeds)}) "
                                    f"{i}/{len(names)}] ")
    finally:
        runner.seeds = seeds
    records = {row: runner.row(row, train=False) for row in names}
    context = {"scale": runner.scale, "seeds": seeds, "steps_override": runner.steps,
               "out": runner.out, "data": runner.data.to_dict(), "mask_counts": list(counts)}
    result = curve_results(records, bases, counts, context)
    paths = write(result, os.path.join(runner.out, de.NAME))
    runner.log(f"[{de.NAME}] results: {paths['markdown']}")
    return result


# --------------------------------------------------------------------------- results
def curve_results(records: Dict[str, dict], bases: Sequence[str], counts: Sequence[int],
                  context: dict) -> dict:
    """Per (row, N): per-seed numbers, mean ± std, paired differences with the reference,
    verdicts, and steps to reach ``REACH_FRACTION`` of the reference's lesion mIoU."""
    cells: Dict[str, Dict[str, dict]] = {}
    for base in bases:
        cells[base] = {}
        for n in counts:
            record = records.get(de.variant(base, n), {"seeds": []})
            # A seed that has not run is absent; one that ran and diverged counts (no numbers).
            ran = [s for s in record["seeds"] if s.get("status") != "not run"]
            per_seed = {s["seed"]: seed_metrics(s) for s in ran}
            curves = {s["seed"]: lesion_curve(s) for s in ran}
            cells[base][str(n)] = {
                "per_seed": per_seed, "curves": curves,
                "stats": {k: mean_std([m.get(k) for m in per_seed.values()])
                          for k, _ in METRICS + (("wall_time_s", ""),)}}
    for base in bases:
        for n in counts:
            cell, ref = cells[base][str(n)], cells[de.REFERENCE_ROW][str(n)]
            seeds = sorted(set(cell["per_seed"]) & set(ref["per_seed"]))
            cell["vs_reference"] = {
                metric: paired_difference([cell["per_seed"][s].get(metric) for s in seeds],
                                          [ref["per_seed"][s].get(metric) for s in seeds])
                for metric in ("lesion_miou", "mean_lesion_aupr")}
            cell["verdict"] = (None if base == de.REFERENCE_ROW
                               else verdict(cell["vs_reference"][PRIMARY]))
            target = ref["stats"]["lesion_miou"]["mean"]
            reach = [steps_to_reach(cell["curves"][s], REACH_FRACTION * target)
                     for s in sorted(cell["curves"])] if target else []
            cell["steps_to_reach"] = {"target_lesion_miou": (REACH_FRACTION * target
                                                             if target else None),
                                      "per_seed": reach}
    return {"suite": de.NAME, "created": time.strftime("%Y-%m-%d %H:%M"),
            "context": context, "rows": list(bases), "labels": dict(de.LABELS),
            "mask_counts": list(counts), "reference": de.REFERENCE_ROW, "cells": cells,
            "summary": summary(cells, bases, counts)}


def summary(cells: dict, bases: Sequence[str], counts: Sequence[int]) -> Dict[str, dict]:
    """Per row: the verdict at each N and over the mask-scarce end (the smaller half of
    the N): "helps there" only if it helps at every N of that half."""
    scarce = list(counts)[:max(1, len(counts) // 2)]
    out = {}
    for base in bases:
        if base == de.REFERENCE_ROW:
            continue
        verdicts = {str(n): cells[base][str(n)]["verdict"] for n in counts}
        at_scarce = [verdicts[str(n)] for n in scarce]
        out[base] = {"verdicts": verdicts, "scarce_counts": scarce,
                     "helps_where_masks_are_scarce": all(v == "helps" for v in at_scarce)}
    return out


# -------------------------------------------------------------------------- markdown
def _pct(value: Optional[float], digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _cell_text(stats: dict, percent: bool = True) -> str:
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None:
        return "—"
    if percent:
        return _pct(mean) + (f" ± {_pct(std)}" if std is not None else "")
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _diff_text(diff: dict) -> str:
    if diff["mean"] is None:
        return "—"
    text = f"{100 * diff['mean']:+.1f}"
    if diff["low"] is not None:
        text += f" [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]"
    return text


def render_markdown(result: dict) -> str:
    counts, bases, labels = result["mask_counts"], result["rows"], result["labels"]
    ctx = result["context"]
    header = ["row"] + [f"N={n}" for n in counts]
    lines = [f"# When does cooperation help? Data-efficiency suite ({ctx['scale']} scale)", "",
             f"Seeds: {', '.join(map(str, ctx['seeds']))}. Mask-training subsets N = "
             f"{', '.join(map(str, counts))} (nested); graded set: "
             f"{(ctx['data'].get('counts') or {}).get('graded_train', '?')} images; "
             f"data: {ctx['data'].get('description', '')}. Written {result['created']}.", "",
             "Cells: mean ± std over seeds, in percent (QWK and ROC-AUC as fractions). "
             "Differences are paired by seed with the segmenter alone "
             f"(`{de.REFERENCE_ROW}`): mean [95 % t-interval]. Verdicts use lesion mIoU.", ""]
    for metric, title in METRICS:
        percent = metric not in ("quadratic_kappa", "referable_roc_auc")
        rows = []
        for base in bases:
            values = [_cell_text(result["cells"][base][str(n)]["stats"][metric], percent)
                      for n in counts]
            if not all(v == "—" for v in values):
                rows.append([labels.get(base, base)] + values)
        lines += [f"## {title}", ""] + markdown_table(header, rows) + [""]
    for metric, title in (("lesion_miou", "lesion mIoU"), ("mean_lesion_aupr",
                                                             "mean lesion AUPR")):
        rows = [[labels.get(base, base)]
                + [_diff_text(result["cells"][base][str(n)]["vs_reference"][metric])
                   for n in counts]
                for base in bases if base != de.REFERENCE_ROW]
        lines += [f"## Difference from the segmenter alone: {title} (points)", ""]
        lines += markdown_table(header, rows) + [""]
    rows = []
    for base, info in result["summary"].items():
        scarce = ", ".join(f"N={n}" for n in info["scarce_counts"])
        rows.append([labels.get(base, base)]
                    + [info["verdicts"][str(n)] or "—" for n in counts]
                    + ["yes" if info["helps_where_masks_are_scarce"] else f"no ({scarce})"])
    lines += ["## Verdicts (lesion mIoU vs the segmenter alone)", ""]
    lines += markdown_table(header + ["helps across the mask-scarce end"], rows)
    rows = []
    for base in bases:
        cells = result["cells"][base]
        texts = []
        for n in counts:
            reach = cells[str(n)]["steps_to_reach"]["per_seed"]
            texts.append(" / ".join("—" if r is None else str(r) for r in reach)
                         if cells[str(n)]["per_seed"] else "not run")
        rows.append([labels.get(base, base)] + texts)
    lines += ["", f"## Steps to reach {int(100 * REACH_FRACTION)} % of the segmenter-alone's "
              "final lesion mIoU", "",
              "Per seed, the first validation step at or above the target (— = not "
              "reached by the end of the run).", ""] + markdown_table(header, rows)
    rows = [[labels.get(base, base)]
            + [format_seconds(result["cells"][base][str(n)]["stats"]["wall_time_s"]["mean"])
               for n in counts]
            for base in bases]
    lines += ["", "## Train time per run (mean; two-step includes its grader stage, "
              "trained once per seed)", ""] + markdown_table(header, rows)
    lines += ["", "![learning curves](learning_curves.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- figure
def figure(result: dict) -> np.ndarray:
    """Lesion mIoU and mean lesion AUPR against N (log x), one line per row, error bars
    = std over seeds; the two panels side by side (uint8 RGB)."""

    counts = result["mask_counts"]
    xs = [math.log10(n) for n in counts]
    pad = 0.1 * (xs[-1] - xs[0] or 1.0)
    xlim = (xs[0] - pad, xs[-1] + pad)
    panels = []
    for metric, title in (("lesion_miou", "lesion mIoU"), ("mean_lesion_aupr",
                                                            "mean lesion AUPR")):
        curves, tops = [], [5.0]
        for base in result["rows"]:
            stats = [result["cells"][base][str(n)]["stats"][metric] for n in counts]
            # Percent, so the axis' one-decimal ticks stay distinct at small values.
            ys = [np.nan if s["mean"] is None else 100 * s["mean"] for s in stats]
            errs = [0.0 if s["std"] is None else 100 * s["std"] for s in stats]
            tops += [y + e for y, e in zip(ys, errs) if np.isfinite(y)]
            curves.append(Curve(result["labels"].get(base, base), xs, ys, yerr=errs,
                                dashed=base == de.REFERENCE_ROW))
        top = min(100.0, 10 * math.ceil(max(tops) / 10 + 0.05))
        panels.append(line_chart(curves, f"{title} vs mask images N", "mask images N (log)",
                                 f"{title} (%)", xlim=xlim, ylim=(0.0, top), plot_size=(420, 340),
                                 xticks=[(x, str(n)) for x, n in zip(xs, counts)]))
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 10), (0, 0)), constant_values=255)
              for p in panels]
    return np.concatenate(padded, axis=1)


def log_to_tensorboard(result: dict, logdir: str, image: Optional[np.ndarray]) -> None:
    """Scalars ``<metric>/<row>`` at step N (mean over seeds) and the figure."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        for base in result["rows"]:
            for n in result["mask_counts"]:
                stats = result["cells"][base][str(n)]["stats"]
                for metric, _ in METRICS:
                    if stats[metric]["mean"] is not None:
                        tf.summary.scalar(f"{metric}/{base}", stats[metric]["mean"], step=n)
        if image is not None:
            tf.summary.image("learning_curves", image[None], step=0)
    writer.flush()


def write(result: dict, directory: str) -> Dict[str, str]:
    """``results.json``, ``results.md``, ``learning_curves.png`` and TensorBoard logs."""

    os.makedirs(directory, exist_ok=True)
    paths = {"json": os.path.join(directory, "results.json"),
             "markdown": os.path.join(directory, "results.md"),
             "figure": os.path.join(directory, "learning_curves.png"),
             "tensorboard": os.path.join(directory, "logs")}
    write_json_atomically(paths["json"], result)
    write_text_atomically(paths["markdown"], render_markdown(result) + "\n")
    image = figure(result)
    write_png(paths["figure"], image)
    log_to_tensorboard(result, paths["tensorboard"], image)
    return paths
