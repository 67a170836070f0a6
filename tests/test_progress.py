"""The progress bar off a terminal (CI logs, nohup): readable lines, never one per item."""
import io
import time

from coopseg.utils.progress import ProgressBar


def test_known_total_logs_every_tenth_and_the_end():
    out = io.StringIO()
    bar = ProgressBar(20, desc="convert", unit="img", stream=out)
    for count in range(1, 21):
        bar.update(count)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("convert [########################] 20/20")


def test_unknown_total_counts_at_doubling_steps_and_says_where_it_ended():
    out = io.StringIO()
    bar = ProgressBar(None, desc="evaluate", unit="batch", stream=out)
    for count in range(1, 20):
        bar.update(count)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [int(line.split()[1]) for line in lines] == [1, 2, 4, 8, 16, 19]
    assert "[" not in out.getvalue() and lines[-1].endswith("done")


def test_resumed_items_move_the_bar_but_not_the_rate(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    bar = ProgressBar(10, desc="convert train", unit="img", stream=out)
    bar.advance(5, info="skipped 1", resumed=True)  # done by an earlier run
    clock[0] = 2.0
    bar.advance(4, info="skipped 1")  # 4 images in 2 s this run
    assert bar.count == 9 and bar.rate() == 2.0
    assert out.getvalue().splitlines()[-1] == (
        "convert train [#####################...] 9/10 2.00 img/s eta 00:00 skipped 1")
