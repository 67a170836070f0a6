"""Timing helpers shared by the benchmarks: interleaved rounds, robust statistics, tables.

The machines are shared and noisy, so every benchmark times its cases side by side: each
round runs one block of every case, in rotated order, and figures are medians over rounds
(benchmarks/README.md, "How they measure").
"""
from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from coopseg.utils.tables import markdown_table


@dataclass
class Case:
    """One timed workload: ``run`` processes ``ops`` steps/batches holding ``images``.

    ``run`` does one block of work (k training steps, n batches of a pipeline) and returns
    only when the work is done; ``setup`` and ``teardown`` (untimed) run before and after
    each block, e.g. to build a fresh iterator, warm it up, and delete it so its
    background threads stop before the next case.
    """

    name: str
    run: Callable[[], None]
    ops: int  # steps or batches in one block
    images: int  # images processed by one block
    setup: Optional[Callable[[], None]] = None  # untimed, before every block
    teardown: Optional[Callable[[], None]] = None  # untimed, after every block


@dataclass
class Samples:
    """Per case, one value per round: wall-clock and process CPU seconds of its block.

    CPU seconds count every thread of this process (TensorFlow's pools, tf.data's
    workers) and not other processes, so they measure the work done even when other
    jobs crowd the cores; wall seconds are what a user waits.
    """

    wall: Dict[str, List[float]]
    cpu: Dict[str, List[float]]


def run_interleaved(cases: Sequence[Case], rounds: int,
                    on_round: Optional[Callable[[int, Dict[str, float]], None]] = None
                    ) -> Samples:
    """Time each case's block once per round, cases rotated from round to round.

    A slow spell on the shared cores then hits all cases of a round alike, and ratios
    taken within a round (``paired_ratios``) cancel most of it.

    Rotation (round r starts with case r mod n) keeps a case from always following
    the same neighbour, whose leftover work (freed memory, a draining thread pool)
    would otherwise bias it. ``on_round(r, wall_seconds_by_name)`` reports progress.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"case names must be unique, got {names}")
    samples = Samples({name: [] for name in names}, {name: [] for name in names})
    for r in range(rounds):
        shift = r % len(cases)
        this_round: Dict[str, float] = {}
        for case in list(cases[shift:]) + list(cases[:shift]):
            if case.setup is not None:
                case.setup()
            cpu_start, start = time.process_time(), time.perf_counter()
            case.run()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if case.teardown is not None:
                case.teardown()
            samples.wall[case.name].append(wall)
            samples.cpu[case.name].append(cpu)
            this_round[case.name] = wall
        if on_round is not None:
            on_round(r, this_round)
    return samples


def per_op(seconds: Dict[str, List[float]], case: Case) -> List[float]:
    """Seconds per step/batch of ``case``, one value per round."""
    return [s / case.ops for s in seconds[case.name]]


def quartiles(values: Sequence[float]) -> Dict[str, float]:
    """Median, first and third quartile and IQR of ``values``."""
    q1, median, q3 = np.percentile(np.asarray(values, np.float64), [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1)}


def case_stats(case: Case, samples: Samples) -> dict:
    """Per-op wall and CPU milliseconds (quartiles over rounds) and images/s (median)."""
    ms = quartiles([1000.0 * s for s in per_op(samples.wall, case)])
    return {
        "ms": ms,
        "cpu_ms": quartiles([1000.0 * s for s in per_op(samples.cpu, case)]),
        "images_per_op": case.images / case.ops,
        "images_per_s": 1000.0 * case.images / case.ops / ms["median"],
        "samples_ms": [1000.0 * s for s in per_op(samples.wall, case)],
    }


def paired_ratios(numerator: Sequence[float], *denominators: Sequence[float]) -> Dict[str, float]:
    """Quartiles of ``numerator[r] / sum(d[r] for d in denominators)`` over rounds r.

    Both sides of each ratio come from the same round, so load that changes between
    rounds cancels out.
    """
    ratios = [n / sum(parts) for n, *parts in zip(numerator, *denominators)]
    return {**quartiles(ratios), "samples": ratios}


def machine_info() -> dict:
    """When and where a benchmark ran: date, cores, load, library versions."""
    import tensorflow as tf

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (Markdown pipe syntax, so it pastes into README.md as is)."""
    cells = [[_cell(v) for v in row] for row in rows]
    return "\n".join(markdown_table([str(h) for h in headers], cells, pad=True))


def format_number(value: float) -> str:
    """3 significant digits, but never exponent notation for big numbers (1677, not 1.68e+03)."""
    return f"{value:#.3g}" if abs(value) < 100 else f"{value:.0f}"


def format_range(stats: Dict[str, float]) -> str:
    """``q1-q3`` of a ``quartiles`` dict."""
    return f"{format_number(stats['q1'])}-{format_number(stats['q3'])}"


def format_ratios(wall: Dict[str, float], cpu: Dict[str, float]) -> str:
    """``wall M (IQR q1-q3), CPU M (IQR q1-q3)`` of two ``paired_ratios`` results."""
    return (f"wall {wall['median']:.3f} (IQR {format_range(wall)}), "
            f"CPU {cpu['median']:.3f} (IQR {format_range(cpu)})")


def _cell(value: object) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def describe_machine(info: dict, load_after: Optional[Sequence[float]] = None) -> str:
    """One line: date, CPU, load before (and after) the run."""
    load = "/".join(f"{x:.2f}" for x in info["load_average"])
    text = (f"{info['date']}  {info['cpus']} cores ({info['processor']}), "
            f"TF {info['tensorflow']}, load avg 1/5/15 min {load} before")
    if load_after is not None:
        text += ", " + "/".join(f"{x:.2f}" for x in load_after) + " after"
    return text
