"""Plumbing shared by the dataset readers: label CSVs and skip-and-count file checks.

Every reader follows the same input policy (``SkipLog``; every case in docs/data.md): a
data bug (missing folder or CSV, bad label, disagreeing rows) is a ``DataError`` naming
the file; a labelled example whose file is missing or empty is skipped and counted; an
image no label row mentions is ignored.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from coopseg.config import NUM_GRADES
from data_pipelines.records import DataError, GradedExample

# EyePACS order first (.jpeg), as the Kaggle set is the one with the most files.
IMAGE_EXTENSIONS: Tuple[str, ...] = (".jpeg", ".jpg", ".png", ".tif", ".tiff", ".bmp")
MAX_NAMED = 10


def require_dir(path: str, what: str) -> str:
    """``path`` if it is a directory, else DataError naming it and what it should hold."""
    if not os.path.isdir(path):
        state = "is not a directory" if os.path.exists(path) else "does not exist"
        raise DataError(f"{what} {path!r} {state}")
    return path


def require_file(path: str, what: str) -> str:
    """``path`` if it is a file, else DataError naming it."""
    if not os.path.isfile(path):
        raise DataError(f"{what} {path!r} does not exist")
    return path


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMED])
    return shown + (f", ... ({len(items) - MAX_NAMED} more)" if len(items) > MAX_NAMED else "")


class SkipLog:
    """Counts what a reader skipped or ignored, by reason, and logs one line per reason.

    ``skip`` drops a labelled example (an error when ``strict``); ``ignore`` notes a
    file that simply is not part of the dataset (never an error). The policy:

    - a missing root/folder/CSV, a CSV without the required columns, a bad label or two
      disagreeing rows for one id is a data bug -> ``DataError`` naming the file (and
      line), raised by the reader, never logged here;
    - a labelled example whose image (or mask) file is missing or zero bytes is noise
      in a big set -> skipped, counted, logged once with up to ``MAX_NAMED`` names, and
      an error under ``strict=True``;
    - an image no label row mentions is not part of the set -> ignored, counted, logged
      (never an error: a folder may legitimately hold other splits' images);
    - nothing usable left -> ``DataError`` saying what was skipped and why (``finish``).
    """

    def __init__(self, source: str, strict: bool):
        self.source = source
        self.strict = strict
        self.skipped: Dict[str, List[str]] = {}
        self.ignored: Dict[str, List[str]] = {}

    def skip(self, reason: str, item: str) -> None:
        if self.strict:
            raise DataError(f"{self.source}: {reason}: {item} "
                            "(strict mode; pass strict=False to skip and count such examples)")
        self.skipped.setdefault(reason, []).append(item)

    def ignore(self, reason: str, item: str) -> None:
        self.ignored.setdefault(reason, []).append(item)

    def describe(self) -> str:
        parts = [f"skipped {len(v)} ({reason}: {_named(v)})" for reason, v in self.skipped.items()]
        parts += [f"ignored {len(v)} ({reason}: {_named(v)})" for reason, v in self.ignored.items()]
        return "; ".join(parts) if parts else "it lists no examples"

    def log(self) -> None:
        for reason, items in self.skipped.items():
            logging.warning("%s: skipped %d example(s), %s: %s", self.source, len(items), reason,
                            _named(items))
        for reason, items in self.ignored.items():
            logging.warning("%s: ignored %d file(s), %s: %s", self.source, len(items), reason,
                            _named(items))

    def finish(self, examples: list, what: str) -> list:
        """Log the summary; the examples sorted by image_id, or DataError when none are left."""
        self.log()
        if not examples:
            raise DataError(f"{self.source}: no usable examples in {what}; {self.describe()}")
        return sorted(examples, key=lambda e: e.image_id)


def index_files(directory: str, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Dict[str, str]:
    """Map file stem -> path for the files in ``directory`` with one of ``extensions``.

    Extensions match case-insensitively; when one stem has several, the earlier
    extension in ``extensions`` wins. Hidden files (``.DS_Store``, macOS ``._x.jpg``
    copies found in zips of these datasets) are not images and are left out.
    """
    rank = {ext.lower(): i for i, ext in enumerate(extensions)}
    best: Dict[str, Tuple[int, str]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            stem, ext = os.path.splitext(entry.name)
            order = rank.get(ext.lower())
            if order is not None and (stem not in best or order < best[stem][0]):
                best[stem] = (order, entry.path)
    return {stem: path for stem, (_, path) in best.items()}


def usable_file(path: str, what: str, log: SkipLog) -> bool:
    """False (and a counted skip) when ``path`` is a zero-byte file: cheap to catch here."""
    if os.path.getsize(path) == 0:
        log.skip(f"zero-byte {what}", path)
        return False
    return True


def strip_image_extension(name: str) -> str:
    """``10_left.jpeg`` -> ``10_left``; ids without an image extension are unchanged."""
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


# --- label CSVs -------------------------------------------------------------------------

@dataclass(frozen=True)
class CsvRow:
    """One data row of a CSV: its 1-based line number and the required columns' values."""

    line: int
    values: Mapping[str, str]


def _csv_lines(path: str) -> List[Tuple[int, List[str]]]:
    """(line number, cells) of the non-blank rows; DataError for an unparsable file."""
    try:
        with open(require_file(path, "label CSV"), newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"label CSV {path!r} cannot be parsed as UTF-8 CSV: {err}") from err


def csv_columns(path: str) -> List[str]:
    """The non-empty column names of a CSV's header, spaces stripped."""
    lines = _csv_lines(path)
    if not lines:
        raise DataError(f"label CSV {path!r} is empty (no header row)")
    return [cell.strip() for cell in lines[0][1] if cell.strip()]


def read_csv_table(path: str, columns: Sequence[str]) -> List[CsvRow]:
    """Rows of ``path`` holding ``columns`` (matched case-insensitively, spaces stripped).

    Tolerates what real label files contain: a UTF-8 BOM, trailing spaces in headers
    (IDRiD's ``Risk of macular edema ``), empty trailing columns and blank or all-empty
    rows (IDRiD's CSVs end in ``,,,`` lines). Extra columns are ignored.
    """
    lines = _csv_lines(path)
    if not lines:
        raise DataError(f"label CSV {path!r} is empty; expected columns {list(columns)}")
    found = [cell.strip() for cell in lines[0][1]]
    position = {name.lower(): i for i, name in reversed(list(enumerate(found))) if name}
    missing = [c for c in columns if c.lower() not in position]
    if missing:
        raise DataError(f"label CSV {path!r} lacks column(s) {missing}: found "
                        f"{[c for c in found if c]}, expected {list(columns)}")
    index = {c: position[c.lower()] for c in columns}
    return [CsvRow(line, {c: (row[i].strip() if i < len(row) else "") for c, i in index.items()})
            for line, row in lines[1:]]


def parse_grade(value: str, path: str, line: int, num_grades: int = NUM_GRADES) -> int:
    """An integer grade in [0, num_grades); ``"2.0"`` is accepted (pandas writes it).

    Anything else is a data bug, never noise: DataError naming file, line and value.
    """
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer() or not 0 <= number < num_grades:
        raise DataError(f"{path}:{line}: grade {value!r} is not an integer in 0..{num_grades - 1}")
    return int(number)


def unique_rows(rows: Iterable[CsvRow], id_column: str, path: str,
                key_of: Callable[[str], str] = lambda value: value) -> List[CsvRow]:
    """``rows`` with repeated ids removed; DataError when repeats disagree.

    Identical repeats are a harmless copy-paste (warned, first kept); repeats with
    different values leave the true label unknown, so both line numbers are named.
    ``key_of`` maps an id cell to the id it names (``10_left.jpeg`` -> ``10_left``).
    """
    first: Dict[str, CsvRow] = {}
    repeats: List[str] = []
    for row in rows:
        if not row.values[id_column]:
            raise DataError(f"{path}:{row.line}: empty {id_column!r}")
        key = key_of(row.values[id_column])
        seen = first.get(key)
        if seen is None:
            first[key] = row
        elif ({k: v for k, v in seen.values.items() if k != id_column}
              != {k: v for k, v in row.values.items() if k != id_column}):
            raise DataError(f"{path}: id {key!r} appears on lines {seen.line} and {row.line} "
                            f"with different values ({dict(seen.values)} vs {dict(row.values)})")
        else:
            repeats.append(f"{key} (lines {seen.line}, {row.line})")
    if repeats:
        logging.warning("%s: %d duplicated row(s) with identical values, kept the first: %s",
                        path, len(repeats), _named(repeats))
    return list(first.values())


# --- graded tables (EyePACS, APTOS, IDRiD grading) ------------------------------------

@dataclass(frozen=True)
class GradeRow:
    """A validated row of a grade CSV: unique id (image extension stripped) and grade."""

    line: int
    image_id: str
    grade: int
    values: Mapping[str, str]


def read_grade_rows(path: str, id_column: str, grade_column: str,
                    extra_columns: Sequence[str] = ()) -> List[GradeRow]:
    """Every row of a grade CSV, checked: required columns, unique ids, grades 0..4.

    All rows are validated, including ones a later filter (EyePACS ``Usage``) drops:
    a bad label anywhere in the file is a bug in that file.
    """
    columns = [id_column, grade_column, *extra_columns]
    # Ids are compared with their image extension stripped: "1_left" and "1_left.jpeg"
    # name one image and must not become two examples.
    rows = unique_rows(read_csv_table(path, columns), id_column, path,
                       key_of=strip_image_extension)
    return [GradeRow(row.line, strip_image_extension(row.values[id_column]),
                     parse_grade(row.values[grade_column], path, row.line), row.values)
            for row in rows]


def attach_images(rows: Sequence[GradeRow], csv_path: str, image_dir: str, log: SkipLog,
                  patient_of: Callable[[str], str] = lambda image_id: image_id,
                  labelled_ids: Optional[Iterable[str]] = None,
                  extensions: Sequence[str] = IMAGE_EXTENSIONS) -> List[GradedExample]:
    """GradedExamples for ``rows`` whose image is in ``image_dir`` and not empty.

    ``labelled_ids`` (default: the ids of ``rows``) are the ids the CSV knows at all;
    images outside it are counted as unlabelled, images of filtered-out rows are not.
    """
    index = index_files(image_dir, extensions)
    examples = []
    for row in rows:
        path = index.get(row.image_id)
        if path is None:
            log.skip(f"no image file in {image_dir}",
                     f"{row.image_id} ({os.path.basename(csv_path)} line {row.line})")
        elif usable_file(path, "image", log):
            examples.append(GradedExample(image_path=path, grade=row.grade,
                                          image_id=row.image_id,
                                          patient_id=patient_of(row.image_id)))
    known = set(labelled_ids) if labelled_ids is not None else {row.image_id for row in rows}
    for stem in sorted(set(index) - known):
        log.ignore(f"image without a row in {os.path.basename(csv_path)}", index[stem])
    return examples
