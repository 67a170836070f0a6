"""A suite's results: our numbers per row (mean ± std over seeds), the paper's beside
them, and which of the paper's claims our numbers support — computed, never written in.

``suite_results`` builds the ``results.json`` content, ``render_markdown`` lays it out as
the paper's tables, ``write_results`` writes both. Metrics are stored as the evaluation
returns them (fractions; QWK in [-1, 1]); the paper's numbers and the tables are in percent.
"""
from __future__ import annotations

import math
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

from coopseg.utils.atomic_write import write_json_atomically, write_text_atomically
from coopseg.utils.tables import markdown_table
from experiments.suites import ROWS, Claim, Column, Suite, Table

PERCENT_METRICS = ("miou", "miou_no_background", "pixel_accuracy", "first_eval_miou",
                   "pretrain_top1_accuracy", "top1_accuracy", "top2_accuracy",
                   "binary_accuracy", "classifier_map", "classifier_recall",
                   "true_classes_miou")
_SEG_KEYS = ("miou", "miou_no_background", "pixel_accuracy", "mean_dice",
             "mean_dice_no_background")
_CLF_KEYS = ("top1_accuracy", "top2_accuracy", "binary_accuracy", "quadratic_kappa")


# ---------------------------------------------------------------------------- numbers
def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _number(value) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def row_metrics(seed_record: dict) -> Dict[str, Optional[float]]:
    """The headline numbers of one seed of a row, from its final stage (and from its
    first stage: a two-step row's pretraining top-1, DecoupledNet's classifier mAP)."""
    stages = seed_record.get("stages", [])
    if seed_record.get("status") != "ok" or not stages:
        return {}
    final = stages[-1]
    seg = final["metrics"].get("segmentation", {})
    clf = final["metrics"].get("classification", {})
    out = {k: _number(seg.get(k)) for k in _SEG_KEYS}
    out.update({k: _number(clf.get(k)) for k in _CLF_KEYS})
    # DecoupledNet's diagnostic: its segmenter given the true image-level classes.
    out["true_classes_miou"] = _number(final["metrics"].get("segmentation_true_classes",
                                                            {}).get("miou"))
    if clf.get("confusion_matrix"):
        # 1.0 when every validation image got the same grade: a classifier at chance level.
        predicted = [sum(col) for col in zip(*clf["confusion_matrix"])]
        out["single_grade"] = float(sum(n > 0 for n in predicted) == 1)
    # Convergence speed needs a validation before the end of the run (eval_every < steps).
    curve = final.get("curve", {}).get("segmentation/miou") or []
    early = len(curve) > 1
    out["first_eval_miou"] = _number(curve[0][1]) if early else None
    out["first_eval_step"] = curve[0][0] if early else None
    if len(stages) > 1:
        pre = stages[0]["metrics"].get("classification", {})
        out["pretrain_top1_accuracy"] = _number(pre.get("top1_accuracy"))
        # DecoupledNet's stage 1: it segments only the classes this classifier names.
        labels = stages[0]["metrics"].get("image_labels", {})
        out["classifier_map"] = _number(labels.get("map"))
        out["classifier_recall"] = _number(labels.get("recall"))
    out["wall_time_s"] = sum(s.get("wall_time_s") or 0.0 for s in stages)
    return out


def mean_std(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean and sample standard deviation (None for one value) of the defined values."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / len(values)
    std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
           if len(values) > 1 else None)
    return {"mean": mean, "std": std, "n": len(values)}


def summarize_row(row_record: dict) -> Dict[str, dict]:
    per_seed = [row_metrics(s) for s in row_record["seeds"]]
    keys = sorted({k for m in per_seed for k in m})
    return {k: mean_std([m.get(k) for m in per_seed]) for k in keys}


def _setting(row_record: dict, dotted: str):
    """A config field of the row's final stage (first seed that has one)."""
    for seed in row_record["seeds"]:
        if seed.get("stages"):
            value = seed["stages"][-1]["config"]
            for part in dotted.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value
    return None


def headline(stage_record: dict) -> str:
    """One line with a stage's main numbers (for progress lines)."""
    if stage_record.get("status") != "ok":
        return stage_record.get("status", "?")
    m = row_metrics({"status": "ok", "stages": [stage_record]})
    parts = []
    if m.get("miou") is not None:
        no_bg = 100 * (m["miou_no_background"] or 0.0)
        parts.append(f"mIoU {100 * m['miou']:.1f} (no bg {no_bg:.1f})")
    if m.get("top1_accuracy") is not None:
        parts.append(f"top-1 {100 * m['top1_accuracy']:.1f}, QWK {m['quadratic_kappa'] or 0:.3f}")
    return ", ".join(parts) or "no validation metrics"


# ----------------------------------------------------------------------------- claims
def _scaled(metric: str, value: Optional[float]) -> Optional[float]:
    return None if value is None else (100 * value if metric in PERCENT_METRICS else value)


def _fmt(metric: str, stats: dict) -> str:
    mean, std = _scaled(metric, stats.get("mean")), _scaled(metric, stats.get("std"))
    if mean is None:
        return "—"
    digits = 1 if metric in PERCENT_METRICS else 3
    text = f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else "")


def evaluate_claim(claim: Claim, summaries: Dict[str, dict], labels: Dict[str, str],
                   settings: Dict[str, str]) -> dict:
    """``supported`` / ``not supported`` / ``not evaluated`` with the numbers behind it."""
    metric = claim.metric
    a = summaries.get(claim.a, {}).get(metric, {})
    b = summaries.get(claim.b, {}).get(metric, {}) if claim.b else {}
    out = {"claim": claim.text, "source": claim.source, "metric": metric, "a": claim.a,
           "b": claim.b or None, "relation": claim.relation}
    missing = [r for r, s in ((claim.a, a), (claim.b, b)) if r and s.get("mean") is None]
    if missing:
        why = ("no validation before the final step (needs run.eval_every < steps)"
               if metric == "first_eval_miou" else "not run with these settings, or diverged")
        return dict(out, verdict="not evaluated",
                    detail=f"no {metric} for {', '.join(missing)}: {why}")
    mean_a = _scaled(metric, a["mean"])
    if claim.relation == "greater_than_value":
        holds = mean_a > claim.value
        detail = f"{labels[claim.a]} {_fmt(metric, a)} vs {claim.value:.1f}"
        noise = _scaled(metric, a.get("std"))
    else:
        mean_b = _scaled(metric, b["mean"])
        std_a, std_b = _scaled(metric, a.get("std")), _scaled(metric, b.get("std"))
        noise = math.hypot(std_a, std_b) if std_a is not None and std_b is not None else None
        detail = f"{labels[claim.a]} {_fmt(metric, a)} vs {labels[claim.b]} {_fmt(metric, b)}"
        if claim.relation == "not_worse":
            tolerance = max(claim.tolerance, noise or 0.0)
            holds = mean_a >= mean_b - tolerance
            detail += f" (tolerance {tolerance:.1f})"
        else:
            holds = mean_a > mean_b
        if settings.get(claim.a) and settings.get(claim.b):
            detail += f" [{settings[claim.a]} vs {settings[claim.b]}]"
        if metric == "first_eval_miou":
            steps = {f"{summaries[r]['first_eval_step']['mean']:.0f}" for r in (claim.a, claim.b)}
            detail += f" (first validation at step {' and '.join(sorted(steps))})"
        out["difference"] = mean_a - mean_b
    collapsed = [labels[r] for r in (claim.a, claim.b) if r and metric in _CLF_KEYS
                 and summaries[r].get("single_grade", {}).get("mean") == 1.0]
    if collapsed:
        verb = "predicts" if len(collapsed) == 1 else "predict"
        detail += f"; {' and '.join(collapsed)} {verb} one grade for every image (chance level)"
    n = min(a.get("n", 0), b.get("n", 0)) if claim.b else a.get("n", 0)
    if n < 2:
        detail += "; single seed, no noise estimate"
    elif noise is not None and "difference" in out and abs(out["difference"]) <= noise:
        detail += f"; the difference is within seed noise (±{noise:.1f})"
    return dict(out, verdict="supported" if holds else "not supported", detail=detail)


# ---------------------------------------------------------------------------- results
def _setup(row_record: dict) -> List[dict]:
    """What each stage of a row ran with (so fairness can be checked by eye)."""
    for seed in row_record["seeds"]:
        if seed.get("stages"):
            rows = []
            for stage in seed["stages"]:
                c = stage["config"]
                t, seg, clf = c["train"], c["train"]["seg"], c["train"]["clf"]
                derived = t.get("derive_clf_from_ratios", True)
                rows.append({"stage": stage["stage"], "method": c["method"], "mode": t["mode"],
                             "steps": t["steps"], "seed": t["seed"],
                             "input_size": c["model"]["input_size"],
                             "seg_batch": seg["batch_size"], "seg_lr": seg["learning_rate"],
                             "clf_batch": seg["batch_size"] * t["batch_ratio"] if derived
                             else clf["batch_size"],
                             "clf_lr": seg["learning_rate"] * t["lr_ratio"] if derived
                             else clf["learning_rate"],
                             "init": "previous stage" if t.get("init_encoder_from") else "random"})
            return rows
    return []


def suite_results(suite: Suite, rows: Dict[str, dict], context: dict) -> dict:
    """The ``results.json`` content of ``suite`` from the runner's row records."""
    summaries = {name: summarize_row(record) for name, record in rows.items()}
    labels = {name: ROWS[name].label for name in rows}
    setting_column = next((c.setting for t in suite.tables for c in t.columns if c.setting), "")
    settings = ({name: f"{setting_column.split('.')[-1]} {_setting(record, setting_column)}"
                 for name, record in rows.items() if _setting(record, setting_column) is not None}
                if setting_column else {})
    return {
        "suite": suite.name,
        "description": suite.description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **context,
        "units": "metrics are fractions (QWK in [-1, 1]); paper numbers are percent",
        "rows": {name: {"label": labels[name], "in_suite": name in suite.rows,
                        "paper_percent": dict(ROWS[name].paper),
                        "summary": summaries[name], "per_class_iou": per_class_iou(record),
                        "setup": _setup(record),
                        "seeds": record["seeds"]}
                 for name, record in rows.items()},
        "claims": [evaluate_claim(c, summaries, labels, settings) for c in suite.claims],
    }


# ---------------------------------------------------------------------------- markdown
def _cell(column: Column, row: dict) -> str:
    if column.setting:
        value = _setting({"seeds": row["seeds"]}, column.setting)
        return "—" if value is None else str(value)
    stats = row["summary"].get(column.metric, {})
    if column.kind == "seconds":
        return format_seconds(stats.get("mean"))
    return _fmt(column.metric, stats)


def _status(row: dict) -> str:
    statuses = [s["status"] for s in row["seeds"]]
    bad = [s for s in statuses if s != "ok"]
    if not bad:
        return ""
    return f" ({len(bad)} of {len(statuses)} seeds {', '.join(sorted(set(bad)))})"


def _table_markdown(table: Table, rows: Dict[str, dict]) -> List[str]:
    with_paper = {c.metric for c in table.columns if table.paper_columns and (
        any(c.metric in rows[r]["paper_percent"] for r in table.rows if r in rows)
        or any(c.metric in ref for _, ref in table.reference_rows))}
    header = ["Method"]
    for column in table.columns:
        header.append(f"{column.header} (ours)" if column.metric in with_paper else column.header)
        if column.metric in with_paper:
            header.append(f"{column.header} (paper)")
    body = []
    for name in table.rows:
        row = rows.get(name)
        cells = [ROWS[name].label + (_status(row) if row else " (not run)")]
        for column in table.columns:
            cells.append(_cell(column, row) if row else "—")
            if column.metric in with_paper:
                paper = ROWS[name].paper.get(column.metric)
                cells.append(f"{paper:.1f}" if paper is not None else "—")
        body.append(cells)
    for label, numbers in table.reference_rows:
        cells = [label]
        for column in table.columns:
            cells.append("—")
            if column.metric in with_paper:
                value = numbers.get(column.metric)
                cells.append(f"{value:.1f}" if value is not None else "—")
        body.append(cells)
    align = ["left"] + ["right"] * (len(header) - 1)
    lines = [f"## {table.title}", ""] + markdown_table(header, body, align)
    if table.note:
        lines += ["", table.note]
    collapsed = [ROWS[r].label for r in table.rows if r in rows and any(
        c.metric in _CLF_KEYS for c in table.columns)
        and rows[r]["summary"].get("single_grade", {}).get("mean") == 1.0]
    if collapsed:
        lines += ["", f"Computed from the confusion matrices: {', '.join(collapsed)} "
                      f"predict{'s' if len(collapsed) == 1 else ''} the same grade for every "
                      "validation image (chance level; QWK 0)."]
    return lines + [""]


def per_class_iou(row_record: dict) -> Dict[str, dict]:
    """Class name -> mean/std IoU over the row's seeds (final stage), undefined skipped."""
    per_seed = [s["stages"][-1]["metrics"].get("segmentation", {}).get("iou", {})
                for s in row_record["seeds"] if s.get("status") == "ok" and s.get("stages")]
    names = list(dict.fromkeys(n for ious in per_seed for n in ious))
    return {n: mean_std([_number(ious.get(n)) for ious in per_seed]) for n in names}


def _per_class_markdown(suite: Suite, results: dict) -> List[str]:
    if not any(c.metric == "miou" for t in suite.tables for c in t.columns):
        return []  # a classification table
    rows = {name: results["rows"][name]["per_class_iou"] for name in suite.rows
            if results["rows"].get(name, {}).get("per_class_iou")}
    if not rows:
        return []
    classes = list(dict.fromkeys(c for ious in rows.values() for c in ious))
    cells = [[ROWS[name].label] + [_fmt("miou", ious.get(c, {})) for c in classes]
             for name, ious in rows.items()]
    return (["## Per-class IoU (ours)", ""]
            + markdown_table(["Method", *classes], cells, ["left"] + ["right"] * len(classes))
            + [""])


def _setup_markdown(results: dict) -> List[str]:
    header = ["row", "stage", "method", "mode", "steps", "seed", "input", "seg batch", "seg LR",
              "clf batch", "clf LR", "init"]
    align = ["left"] * 4 + ["right"] * 7 + ["left"]
    rows = []
    for name, row in results["rows"].items():
        for s in row["setup"]:
            # Only the agents a mode trains have a batch and LR that matter.
            seg = (["—", "—"] if s["mode"] == "clf_only"
                   else [str(s["seg_batch"]), f"{s['seg_lr']:.3g}"])
            clf = (["—", "—"] if s["mode"] == "seg_only"
                   else [str(s["clf_batch"]), f"{s['clf_lr']:.3g}"])
            rows.append([name, s["stage"], s["method"], s["mode"], str(s["steps"]), str(s["seed"]),
                         str(s["input_size"]), *seg, *clf, s["init"]])
    return (["## Setup of every row (from the configs that ran)", ""]
            + markdown_table(header, rows, align) + [""])


def _claims_markdown(claims: List[dict]) -> List[str]:
    lines = ["## Which claims our run supports", ""]
    if not claims:
        return lines + ["This suite checks no claim of the paper.", ""]
    for c in claims:
        lines.append(f"- {c['claim']} ({c['source']}): **{c['verdict']}** — {c['detail']}")
    counts = {v: sum(c["verdict"] == v for c in claims)
              for v in ("supported", "not supported", "not evaluated")}
    return lines + ["", f"{counts['supported']} supported, {counts['not supported']} not "
                        f"supported, {counts['not evaluated']} not evaluated.", ""]


def _runs_markdown(results: dict) -> List[str]:
    rows = []
    for name, row in results["rows"].items():
        for seed in row["seeds"]:
            if not seed["stages"]:
                rows.append([name, str(seed["seed"]), "—", seed["status"], "—", "—"])
            for s in seed["stages"]:
                where = s["run_dir"] + (" (reused)" if s.get("reused_from") else "")
                rows.append([name, str(seed["seed"]), s["stage"], s["status"],
                             format_seconds(s.get("wall_time_s")), where])
    header = ["row", "seed", "stage", "status", "time", "run directory"]
    align = ["left", "right", "left", "left", "right", "left"]
    return ["## Runs", ""] + markdown_table(header, rows, align) + [""]


def render_markdown(suite: Suite, results: dict) -> str:
    data = results["data"]
    counts = data.get("counts")
    seeds = results["seeds"]
    lines = [f"# {suite.description}: our run next to the paper", "",
             f"Scale `{results['scale']}`, seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(map(str, seeds))}"
             + (f" (mean ± sample std over {len(seeds)} seeds)" if len(seeds) > 1 else "")
             + (f", step budget overridden to {results['steps_override']}"
                if results.get("steps_override") else "") + ".",
             f"Data: {data['description']}"
             + (f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else "")
             + "; every row trains on the same sets and is validated on the same validation set.",
             "Paper numbers: Haloi et al. 2017, Tables I-IV (EyePACS and the authors' lesion "
             "set; not comparable in absolute terms with other data).",
             f"Written {results['created']}.", ""]
    for table in suite.tables:
        lines += _table_markdown(table, results["rows"])
    lines += _claims_markdown(results["claims"])
    lines += _per_class_markdown(suite, results)
    lines += _setup_markdown(results)
    lines += _runs_markdown(results)
    return "\n".join(lines)


def write_results(suite: Suite, results: dict, directory: str) -> Tuple[str, str]:
    """Write ``results.json`` and ``results.md`` into ``directory``; returns both paths."""
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "results.json")
    md_path = os.path.join(directory, "results.md")
    write_json_atomically(json_path, results)
    write_text_atomically(md_path, render_markdown(suite, results) + "\n")
    return json_path, md_path
