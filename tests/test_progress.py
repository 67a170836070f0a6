"""The progress bar off a terminal (CI logs, nohup): readable lines, never one per item."""
import io

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
