"""A dependency-free progress bar for long loops (training, conversion, evaluation).

On a terminal it redraws one line; otherwise (CI logs, nohup) it prints a line every
``log_fraction`` of the work so logs stay readable.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class ProgressBar:
    """``bar.update(n, info="loss 0.31")`` with n the number of items done so far.

    ``total=None`` (e.g. a dataset of unknown size): a counter with the rate instead of
    a bar; off a terminal it logs at 1, 2, 4, 8, ... items.
    """

    def __init__(self, total: Optional[int], desc: str = "", unit: str = "it", start: int = 0,
                 stream: Optional[TextIO] = None, log_fraction: float = 0.1, width: int = 24):
        self.total = None if total is None else max(1, int(total))
        self.desc = desc
        self.unit = unit
        self.stream = stream or sys.stderr
        self.width = width
        self.start_count = start
        self.count = start
        self.t0 = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._log_every = (max(1, int(self.total * log_fraction)) if self.total is not None
                           else None)
        self._next_log = start + (self._log_every or 1)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return (self.count - self.start_count) / elapsed if elapsed > 0 else 0.0

    def line(self, info: str = "") -> str:
        rate = self.rate()
        if self.total is None:
            text = f"{self.desc} {self.count} {self.unit} {rate:.2f} {self.unit}/s"
            return f"{text} {info}".rstrip()
        frac = min(1.0, self.count / self.total)
        filled = int(frac * self.width)
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        bar = "#" * filled + "." * (self.width - filled)
        text = (f"{self.desc} [{bar}] {self.count}/{self.total} "
                f"{rate:.2f} {self.unit}/s eta {_fmt_seconds(eta)}")
        return f"{text} {info}".rstrip()

    def update(self, count: int, info: str = "") -> None:
        self.count = count
        if self.tty:
            self.stream.write("\r" + self.line(info) + "\033[K")
            self.stream.flush()
        elif count >= self._next_log or (self.total is not None and count >= self.total):
            self.stream.write(self.line(info) + "\n")
            self.stream.flush()
            while self._next_log <= count:
                # A known total logs every log_fraction of it; an unknown one doubles.
                self._next_log += self._log_every or self._next_log

    def advance(self, n: int = 1, info: str = "", resumed: bool = False) -> None:
        """``update`` by ``n`` more items. ``resumed=True`` for items finished by an
        earlier run (e.g. a converter's complete shards): they move the bar and count
        but not the rate, which would otherwise promise an ETA this run cannot keep."""
        if resumed:
            self.start_count += n
        self.update(self.count + n, info)

    def close(self, info: str = "") -> None:
        if self.tty:
            self.stream.write("\r" + self.line(info) + "\033[K\n")
            self.stream.flush()
        elif self.total is None and self.count > self.start_count:
            # An unknown total has no "last item" line of its own: say where it ended.
            self.stream.write(self.line(info) + " done\n")
            self.stream.flush()
