"""Run and report the real-data suite: per set-up, every row against the segmenter alone
(paired by seed), what resolution buys per lesion at equal steps and at equal passes, PR
curves and full-resolution overlays.

    python -m experiments.run --suite=real_lesions --real_data=~/data --rows=core --seeds=0,1,2
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from coopseg.evaluation.figures import Curve, image_grid, line_chart, write_png
from coopseg.evaluation.visualize import overlay_rgb
from coopseg.serving.predict_folder import prepare_photo
from coopseg.serving.predictor import load_predictor
from coopseg.utils.atomic_write import write_json_atomically, write_text_atomically
from coopseg.utils.tables import markdown_table
from data_pipelines import fundus
from data_pipelines.augment import photo_region
from data_pipelines.datasets import load_masks, mask_sets
from data_pipelines.imageio import read_image, read_mask_example
from experiments import real_lesions as rl
from experiments.learning_curve import paired_difference, seed_metrics, verdict
from experiments.results import format_seconds, mean_std

# The verdicts use mean lesion AUPR (the IDRiD challenge's lesion metric: threshold-free,
# and meaningful for lesions of a few pixels); lesion mIoU is reported beside it.
PRIMARY = "mean_lesion_aupr"
METRICS: Tuple[Tuple[str, str], ...] = (
    ("mean_lesion_aupr", "mean lesion AUPR"), ("lesion_miou", "lesion mIoU"),
    ("quadratic_kappa", "grading QWK"), ("referable_roc_auc", "referable-DR ROC-AUC"))
FRACTION_METRICS = ("quadratic_kappa", "referable_roc_auc")
# (label, set-up a, set-up b, what is held equal) by set-up position in ``rl.setups``.
RESOLUTION_COMPARISONS = (
    ("whole high vs whole low", 1, 0, "equal steps and equal passes"),
    ("patches vs whole low, equal passes", 2, 0, "equal passes (more steps)"),
    ("patches vs whole low, equal steps", 3, 0, "equal steps"),
    ("patches vs whole high, equal passes", 2, 1, "same working resolution"),
)
OVERLAY_PHOTOS = 2


def cell_metrics(seed_record: dict) -> Dict[str, Optional[float]]:
    """One seed's numbers: ``learning_curve.seed_metrics`` plus AUPR per lesion."""
    out = seed_metrics(seed_record)
    final = (seed_record.get("stages") or [{}])[-1]
    for name, value in ((final.get("report") or {}).get("lesion_aupr") or {}).items():
        out[f"aupr/{name}"] = value
    return out


def suite_results(records: Dict[str, dict], bases: Sequence[str], setup_list: Sequence,
                  context: dict) -> dict:
    """Cells per (row, set-up): per-seed numbers, mean ± std, paired differences with the
    segmenter alone at that set-up, verdicts; and the resolution comparisons per row."""
    cells: Dict[str, Dict[str, dict]] = {}
    lesions: List[str] = []
    for base in bases:
        cells[base] = {}
        for setup in setup_list:
            record = records.get(rl.variant(base, setup.name), {"seeds": []})
            ran = [s for s in record["seeds"] if s.get("status") != "not run"]
            per_seed = {s["seed"]: cell_metrics(s) for s in ran}
            keys = sorted({k for m in per_seed.values() for k in m})
            lesions += [k for k in keys if k.startswith("aupr/") and k not in lesions]
            cells[base][setup.name] = {
                "per_seed": per_seed, "run_dirs": {s["seed"]: s["stages"][-1]["run_dir"]
                                                   for s in ran if s.get("stages")},
                "stats": {k: mean_std([m.get(k) for m in per_seed.values()])
                          for k in keys or [m for m, _ in METRICS]}}
    for base in bases:
        for setup in setup_list:
            cell, ref = cells[base][setup.name], cells[rl.REFERENCE_ROW][setup.name]
            cell["vs_reference"] = _paired(cell, ref, ("mean_lesion_aupr", "lesion_miou"))
            cell["verdicts"] = ({} if base == rl.REFERENCE_ROW else
                                {k: verdict(v) for k, v in cell["vs_reference"].items()})
    resolution = {}
    for base in bases:
        resolution[base] = []
        for label, a, b, held in RESOLUTION_COMPARISONS:
            if max(a, b) >= len(setup_list):
                continue
            sa, sb = setup_list[a], setup_list[b]
            diffs = _paired(cells[base][sa.name], cells[base][sb.name],
                            ("mean_lesion_aupr", "lesion_miou", *lesions))
            resolution[base].append({"label": label, "a": sa.name, "b": sb.name, "held": held,
                                     "diffs": diffs,
                                     "verdicts": {k: verdict(v) for k, v in diffs.items()}})
    return {"suite": rl.NAME, "created": time.strftime("%Y-%m-%d %H:%M"), "context": context,
            "rows": list(bases), "labels": dict(rl.LABELS), "lesions": lesions,
            "setups": [{"name": s.name, "label": s.label, "input_size": s.input_size,
                        "working_size": s.working_size, "steps_factor": s.steps_factor}
                       for s in setup_list],
            "reference": rl.REFERENCE_ROW, "cells": cells, "resolution": resolution}


def _paired(cell: dict, ref: dict, metrics: Sequence[str]) -> Dict[str, dict]:
    seeds = sorted(set(cell["per_seed"]) & set(ref["per_seed"]))
    return {m: paired_difference([cell["per_seed"][s].get(m) for s in seeds],
                                 [ref["per_seed"][s].get(m) for s in seeds]) for m in metrics}


# -------------------------------------------------------------------------- markdown
def _text(stats: dict, fraction: bool) -> str:
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None:
        return "—"
    if fraction:
        return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def _diff(diff: dict) -> str:
    if diff["mean"] is None:
        return "—"
    text = f"{100 * diff['mean']:+.1f}"
    if diff["low"] is not None:
        text += f" [{100 * diff['low']:+.1f}, {100 * diff['high']:+.1f}]"
    return text


def render_markdown(result: dict) -> str:
    ctx, labels, bases = result["context"], result["labels"], result["rows"]
    setups = result["setups"]
    header = ["row"] + [s["name"] for s in setups]
    lines = [f"# Real photos: lesion segmentation and grading ({ctx['scale']} scale)", "",
             f"Command: `{ctx.get('command', '')}`", "",
             f"Seeds: {', '.join(map(str, ctx['seeds']))}; data: "
             f"{ctx['data'].get('description', '')}. Written {result['created']}.", "",
             "Set-ups: " + "; ".join(f"`{s['name']}` = {s['label']}" for s in setups) + ".", "",
             "Cells: mean ± std over seeds, percent (QWK and ROC-AUC as fractions). "
             "Differences are paired by seed: mean [95 % t-interval], in points; a verdict "
             "(helps / hurts / within noise) needs the whole interval on one side of 0.", ""]
    for metric, title in METRICS + tuple((k, f"AUPR, {k[5:]}") for k in result["lesions"]):
        rows = [[labels.get(b, b)] + [_text(result["cells"][b][s["name"]]["stats"].get(
            metric, {}), metric in FRACTION_METRICS) for s in setups] for b in bases]
        rows = [r for r in rows if any(v != "—" for v in r[1:])]
        if rows:
            lines += [f"## {title}", ""] + markdown_table(header, rows) + [""]
    titles = dict(METRICS)
    for metric in ("mean_lesion_aupr", "lesion_miou"):
        rows = [[labels.get(b, b)] + [
            f"{_diff(result['cells'][b][s['name']]['vs_reference'][metric])} "
            f"{result['cells'][b][s['name']]['verdicts'].get(metric, '')}" for s in setups]
            for b in bases if b != result["reference"]]
        if rows:
            lines += [f"## Difference from the segmenter alone: {titles[metric]}", ""]
            lines += markdown_table(header, rows) + [""]
    if any(result["resolution"].values()):
        lines += ["## What resolution buys, per lesion (AUPR points, paired by seed)", ""]
    for base in bases:
        comparisons = result["resolution"].get(base, [])
        if not comparisons:
            continue
        metric_names = ["mean_lesion_aupr"] + result["lesions"]
        rows = [[f"{c['a']} − {c['b']} ({c['held']})"]
                + [_diff(c["diffs"][m]) for m in metric_names] for c in comparisons]
        lines += [f"### {labels.get(base, base)}", ""]
        lines += markdown_table(["comparison", "mean"] + [m[5:] for m in metric_names[1:]],
                                rows) + [""]
    rows = [[labels.get(b, b)] + [format_seconds(result["cells"][b][s["name"]]["stats"].get(
        "wall_time_s", {}).get("mean")) for s in setups] for b in bases]
    lines += ["## Train time per run (mean)", ""] + markdown_table(header, rows)
    lines += ["", "![PR curves](pr_curves.png)", "", "![overlays](overlays.png)", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
def pr_figure(result: dict, records: Dict[str, dict]) -> Optional[np.ndarray]:
    """Per lesion, the segmenter alone's PR curve at each set-up (first seed)."""
    panels = []
    for lesion in [k[5:] for k in result["lesions"]]:
        curves = []
        for setup in result["setups"]:
            record = records.get(rl.variant(result["reference"], setup["name"]), {})
            seeds = [s for s in record.get("seeds", []) if s.get("status") == "ok"]
            report = (seeds[0]["stages"][-1].get("report") or {}) if seeds else {}
            curve = (report.get("pr_curves") or {}).get(lesion)
            if curve:
                curves.append(Curve(setup["name"], curve["recall"], curve["precision"]))
        if curves:
            panels.append(line_chart(curves, f"{lesion}: segmenter alone", "recall",
                                     "precision", plot_size=(260, 220)))
    if not panels:
        return None
    height = max(p.shape[0] for p in panels)
    return np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 8), (0, 0)),
                                  constant_values=255) for p in panels], axis=1)


def overlay_figure(result: dict, val_examples: Sequence, class_names: Sequence[str]
                   ) -> Optional[np.ndarray]:
    """The first validation photos at their own aspect ratio: the fused expert masks,
    then the segmenter alone's prediction at each set-up (first seed), whole photo."""

    predictors = []
    for setup in result["setups"]:
        dirs = result["cells"][result["reference"]][setup["name"]]["run_dirs"]
        if dirs:
            predictors.append((setup["name"], load_predictor(dirs[sorted(dirs)[0]])))
    if not predictors or not val_examples:
        return None
    rows, captions = [], []
    for example in list(val_examples)[:OVERLAY_PHOTOS]:
        photo = None
        panels = []
        for name, predictor in predictors:
            photo = prepare_photo(example.image_path, predictor.input_size,
                                  predictor.preprocessing, overlay_size=768)
            if photo.error:
                break
            out = predictor(photo.model_input[None])
            y0, y1, x0, x1 = photo_region(out["class_map"][0].shape[0], *photo.view_shape)
            panels.append(overlay_rgb(photo.display, out["class_map"][0][y0:y1, x0:x1],
                                      len(class_names)))
        if photo is None or photo.error:
            continue
        _, mask = read_mask_example(example, class_names, class_names[1:])
        if predictors[0][1].preprocessing.crop_retina:
            image = read_image(example.image_path)
            box = fundus.crop_box_to_retina(image, predictors[0][1].preprocessing.retina_threshold)
            if box is not None:
                mask = fundus.apply_box(mask, box, 0)
        truth = overlay_rgb(photo.display, np.where(mask < len(class_names), mask, 0),
                            len(class_names))
        rows.append([truth] + panels)
        captions.append(os.path.basename(example.image_path))
    if not rows:
        return None
    return image_grid(rows, captions, ["experts (fused)"] + [n for n, _ in predictors],
                      title="Segmenter alone, whole photos")


# ------------------------------------------------------------------------------ run
def run(runner, row_names: Sequence[str] = (), setup_names: Sequence[str] = (),
        train: bool = True, command: str = "") -> dict:
    """Train the rows ``rl.rows(row_names, ...)`` names, seed by seed, then write the
    results into ``<out>/real_lesions/``. ``train=False`` only reports the stages that
    have finished."""
    setup_list = ([rl.setup_named(n, runner.scale) for n in setup_names]
                  or list(rl.setups(runner.scale)))
    names = rl.rows(row_names, runner.scale, [s.name for s in setup_list])
    bases = rl.base_rows(names)
    seeds = list(runner.seeds)
    try:
        for s, seed in enumerate(seeds if train else [], 1):
            runner.seeds = [seed]
            for i, row in enumerate(names, 1):
                runner.row(row, train=True, progress=f"[{rl.NAME} seed {seed} ({s}/"
                                                     f"{len(seeds)}) {i}/{len(names)}] ")
    finally:
        runner.seeds = seeds
    records = {row: runner.row(row, train=False) for row in names}
    context = {"scale": runner.scale, "seeds": seeds, "out": runner.out, "command": command,
               "data": runner.data.to_dict()}
    result = suite_results(records, bases, setup_list, context)
    paths = write(result, records, os.path.join(runner.out, rl.NAME), runner.data)
    runner.log(f"[{rl.NAME}] results: {paths['markdown']}")
    return result


def write(result: dict, records: Dict[str, dict], directory: str, data) -> Dict[str, str]:
    """``results.json``, ``results.md``, ``pr_curves.png`` and ``overlays.png``."""
    os.makedirs(directory, exist_ok=True)
    paths = {"json": os.path.join(directory, "results.json"),
             "markdown": os.path.join(directory, "results.md"),
             "pr_curves": os.path.join(directory, "pr_curves.png"),
             "overlays": os.path.join(directory, "overlays.png")}
    write_json_atomically(paths["json"], result)
    write_text_atomically(paths["markdown"], render_markdown(result) + "\n")
    figure = pr_figure(result, records)
    if figure is not None:
        write_png(paths["pr_curves"], figure)
    (path, fmt), = mask_sets(data.masks_val, data.masks_format)[:1]
    val = load_masks(fmt, path, data.class_names, role="val")
    figure = overlay_figure(result, val, data.class_names)
    if figure is not None:
        write_png(paths["overlays"], figure)
    return paths
