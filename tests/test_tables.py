"""Markdown tables: alignment rules, console padding, and rows that do not fit the header."""
import pytest

from coopseg.utils.tables import markdown_table


def test_plain_table_rules_follow_the_alignment():
    lines = markdown_table(["Method", "mIoU", "note"], [["JointSeg", "66.1", "paper"]],
                           align=["left", "right", "left"])
    assert lines == ["| Method | mIoU | note |",
                     "| --- | ---: | --- |",
                     "| JointSeg | 66.1 | paper |"]


def test_default_alignment_is_left_and_an_empty_body_keeps_header_and_rule():
    assert markdown_table(["a", "b"], []) == ["| a | b |", "| --- | --- |"]


def test_padding_widens_columns_to_the_longest_cell():
    lines = markdown_table(["case", "ms"], [["joint step", "12.5"], ["fit", "9"]], pad=True)
    assert lines == ["| case       | ms   |",
                     "|------------|------|",
                     "| joint step | 12.5 |",
                     "| fit        | 9    |"]
    assert len({len(line) for line in lines}) == 1  # lines up as plain text


def test_padded_right_column_is_right_justified_with_a_colon_rule():
    lines = markdown_table(["x", "value"], [["a", "1"], ["bb", "1000000"]],
                           align=["left", "right"], pad=True)
    assert lines == ["| x  |   value |",
                     "|----|--------:|",
                     "| a  |       1 |",
                     "| bb | 1000000 |"]


def test_a_row_with_the_wrong_number_of_cells_is_refused():
    with pytest.raises(ValueError, match=r"row 2 has 3 cells but the header has 2 columns"):
        markdown_table(["a", "b"], [["1", "2"], ["1", "2", "3"]])
    with pytest.raises(ValueError, match=r"row 1 has 1 cells"):
        markdown_table(["a", "b"], [["1"]], pad=True)


def test_bad_alignments_and_an_empty_header_are_refused():
    with pytest.raises(ValueError, match=r"align has 1 entries but the header has 2"):
        markdown_table(["a", "b"], [], align=["left"])
    with pytest.raises(ValueError, match=r"unknown alignment 'center'"):
        markdown_table(["a"], [], align=["center"])
    with pytest.raises(ValueError, match="at least one column"):
        markdown_table([], [])
