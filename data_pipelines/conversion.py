"""Offline conversion of a dataset split into sharded TFRecords (``coopseg-convert``).

The library behind ``coopseg-convert`` (``coopseg/cli/convert.py`` holds its flags): per
image a retina crop, square resize and optional Graham normalisation (``convert_example``),
then reproducible shards and a ``manifest.json``, resumed shard by shard (``convert_split``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from absl import logging

from coopseg.config import IGNORE_LABEL, LESION_PRIORITY, ConfigError
from coopseg.utils.atomic_write import write_json_atomically
from coopseg.utils.progress import ProgressBar
from data_pipelines import fundus, tfrecords
from data_pipelines.datasets import FORMATS as DATASET_FORMATS
from data_pipelines.datasets import GRADED_READERS, MASK_READERS, SPLITS, load_graded, load_masks
from data_pipelines.imageio import UnreadableImageError, read_image, read_mask_example
from data_pipelines.records import DataError, GradedExample, MaskExample

# Format name (the converter's --format, the same as coopseg-train's --graded_format /
# --masks_format) -> (reader kind, reader format name): every reader's declaration.
FORMATS: Dict[str, Tuple[str, str]] = {name: (f.kind, name)
                                       for name, f in DATASET_FORMATS.items()}
# Readers whose on-disk layout has named splits (IDRiD train/test, VOC train/val).
_SPLIT_READERS = tuple(SPLITS)
STATS_DIR = ".shard_stats"
_SHARD_FILE = re.compile(
    r"^(?P<split>.+)-\d{5}-of-(?P<num_shards>\d{5})\.tfrecord(\.partial|\.json)?$")

Example = Union[GradedExample, MaskExample]


@dataclass(frozen=True)
class ConvertOptions:
    """Everything one conversion needs; ``fingerprint`` is what fixes its output."""

    format: str
    input: str
    output: str
    split: str = "train"
    source_split: str = ""  # the reader's split (IDRiD train/test, VOC train/val); "" = split
    size: int = 256
    crop_retina: Optional[bool] = None  # None: on for fundus formats, off for VOC photos
    retina_threshold: int = 10
    graham: bool = False
    encoding: str = "png"
    jpeg_quality: int = 95
    num_shards: int = 0  # 0: ceil(records / shard_size)
    shard_size: int = 1024
    workers: int = 0  # 0: all cores
    class_names: Tuple[str, ...] = ()  # () = the format's default (mask formats)
    # Overlapping binary masks: first listed wins. None = config.LESION_PRIORITY,
    # keeping the names among class_names (IDRiD has no drusen, VOC no lesions).
    mask_priority: Optional[Tuple[str, ...]] = None
    # Extra reader keywords, e.g. (("usage", "public"),) for EyePACS' solution CSV.
    reader_args: Tuple[Tuple[str, str], ...] = ()
    strict: bool = False
    overwrite: bool = False

    @property
    def kind(self) -> str:
        return FORMATS[self.format][0]

    def resolved(self) -> "ConvertOptions":
        """These options with the format's defaults (retina crop, class names, mask
        priority) filled in.

        Raises ConfigError for a priority naming a class that is not a foreground class.
        """
        if not self.split or os.sep in self.split or self.split.startswith("."):
            raise ConfigError(f"--split={self.split!r} must be a plain file-name prefix")
        crop_retina = (DATASET_FORMATS[self.format].fundus if self.crop_retina is None
                       else self.crop_retina)
        if self.kind != "masks":
            return dataclasses.replace(self, crop_retina=crop_retina, class_names=(),
                                       mask_priority=())
        class_names = tuple(self.class_names) or default_class_names(self.format)
        if self.mask_priority is None:
            priority = tuple(name for name in LESION_PRIORITY if name in class_names[1:])
        else:
            priority = tuple(self.mask_priority)
            unknown = [name for name in priority if name not in class_names[1:]]
            if unknown:
                raise ConfigError(f"--mask_priority names {unknown}, which are not foreground "
                                  f"classes {list(class_names[1:])}")
        return dataclasses.replace(self, crop_retina=crop_retina, class_names=class_names,
                                   mask_priority=priority)

    def fingerprint(self, num_shards: int, examples: Sequence[Example]) -> dict:
        """What fixes a split's output: options and the record list (compared on resume)."""
        # Every field of every record (ids, paths, grades): new images or edited labels
        # must not be resumed into shards made from the old list.
        digest = hashlib.sha1("\n".join(map(repr, examples)).encode("utf-8")).hexdigest()
        return {
            "records": {"count": len(examples), "sha1": digest},
            "format": self.format, "input": os.path.abspath(self.input),
            "source_split": ((self.source_split or self.split)
                             if self.format in _SPLIT_READERS else None),
            "size": self.size,
            "crop_retina": self.crop_retina, "retina_threshold": self.retina_threshold,
            "graham": self.graham, "encoding": self.encoding,
            "jpeg_quality": self.jpeg_quality if self.encoding == "jpeg" else None,
            "num_shards": num_shards,
            "shard_size": None if self.num_shards else self.shard_size,
            "class_names": list(self.class_names), "mask_priority": list(self.mask_priority or ()),
            "reader_args": dict(self.reader_args),
        }


# --- records in ----------------------------------------------------------------------

def default_class_names(fmt: str) -> Tuple[str, ...]:
    """Class names of a mask format: the paper's lesion classes, or the dataset's own
    (as its reader declares them)."""
    return DATASET_FORMATS[fmt].default_class_names()


def load_examples(options: ConvertOptions) -> List[Example]:
    """The reader's records for ``options.input``, sorted by id (duplicates are an error)."""
    kind, reader_format = FORMATS[options.format]
    kwargs: Dict[str, object] = {"strict": options.strict}
    if options.format in _SPLIT_READERS:
        kwargs["split"] = options.source_split or options.split
    reader = (GRADED_READERS if kind == "graded" else MASK_READERS)[reader_format]
    accepted = set(inspect.signature(reader).parameters) - {"root", "class_names", "strict"}
    for key, value in options.reader_args:
        if key not in accepted:
            raise ConfigError(f"--reader_arg={key}=...: the {options.format} reader "
                              f"({reader.__name__}) takes {sorted(accepted)}")
        kwargs[key] = {"true": True, "false": False}.get(value.lower(), value)
    if kind == "graded":
        examples = load_graded(reader_format, options.input, **kwargs)
    else:
        examples = load_masks(reader_format, options.input, tuple(options.class_names), **kwargs)
    return sort_examples(examples, options.input)


def sort_examples(examples: Sequence[Example], source: str) -> List[Example]:
    """Examples sorted by id: the order that fixes which shard each record lands in."""
    ordered = sorted(examples, key=lambda e: e.image_id)
    for previous, current in zip(ordered, ordered[1:]):
        if previous.image_id == current.image_id:
            raise DataError(f"{source}: two records with id {current.image_id!r} "
                            f"({previous.image_path}, {current.image_path})")
    if not ordered:
        raise DataError(f"{source}: no records to convert")
    return ordered


# --- one example ---------------------------------------------------------------------

@dataclass
class Converted:
    """One example after preprocessing, or why it was skipped."""

    record: Optional[tfrecords.EncodedRecord] = None
    pixel_counts: Optional[np.ndarray] = None  # [256] histogram of the stored mask
    retina_found: bool = True
    skip_reason: str = ""


def convert_example(example: Example, options: ConvertOptions) -> Converted:
    """Decode, preprocess and encode one example (``options`` resolved); an unreadable
    file becomes a skip (or, with ``options.strict``, an error naming it).

    With OpenCV: decode (``data_pipelines.imageio``, the same reader the direct pipeline
    uses), crop the black border to the retina disc (the mask gets the same box), pad to
    a centred square, resize (image INTER_AREA, mask nearest), optionally Graham-normalise
    (image only), re-encode (``data_pipelines.fundus``). Mask sets store the collapsed
    class-index map (binary masks by ``mask_priority``, first wins; label maps as they are).
    """
    try:
        if isinstance(example, MaskExample):
            image, mask = read_mask_example(example, options.class_names, options.mask_priority)
        else:
            image, mask = read_image(example.image_path), None
    except UnreadableImageError as err:
        if options.strict:
            raise
        return Converted(skip_reason=str(err))
    labels: Tuple[int, ...] = ()
    if mask is not None:
        # The image-level label is what the full-resolution mask shows: a lesion of a
        # few pixels that resizing drops is still in the image.
        present = np.bincount(mask.ravel(), minlength=256)
        labels = tuple(int(present[c] > 0) for c in range(1, len(options.class_names)))
    image, mask, retina_found = fundus.prepare_fundus(
        image, mask, options.size, crop_retina=options.crop_retina,
        threshold=options.retina_threshold, graham=options.graham)
    record = tfrecords.EncodedRecord(
        image_id=example.image_id, image_format=options.encoding,
        image_encoded=tfrecords.encode_image(image, options.encoding, options.jpeg_quality),
        height=image.shape[0], width=image.shape[1], grade=int(example.grade),
        mask_encoded=tfrecords.encode_image(mask, "png") if mask is not None else b"",
        labels=labels)
    counts = np.bincount(mask.ravel(), minlength=256) if mask is not None else None
    return Converted(record=record, pixel_counts=counts, retina_found=retina_found)


# --- shards and their statistics -----------------------------------------------------

def resolve_num_shards(options: ConvertOptions, num_records: int) -> int:
    """``--num_shards``, else enough shards of ``--shard_size``; never more than records."""
    wanted = options.num_shards or -(-num_records // options.shard_size)
    return max(1, min(wanted, num_records))


def _stats_path(out_dir: str, shard_file: str) -> str:
    return os.path.join(out_dir, STATS_DIR, os.path.basename(shard_file) + ".json")


def _split_files(out_dir: str, split: str) -> List[Tuple[str, int]]:
    """(path, shard count) of every shard, partial shard and stats file of ``split``."""
    found = []
    for folder in (out_dir, os.path.join(out_dir, STATS_DIR)):
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            match = _SHARD_FILE.match(name)
            # The greedy split group makes "train-extra-00000-of-00001" split "train-extra".
            if match and match["split"] == split:
                found.append((os.path.join(folder, name), int(match["num_shards"])))
    return found


def _new_stats(fingerprint: dict, num_classes: int) -> dict:
    return {"options": fingerprint, "count": 0, "with_grade": 0, "with_mask": 0,
            "grade_histogram": {}, "class_pixel_counts": [0] * num_classes, "ignore_pixels": 0,
            "skipped": [], "no_retina_found": []}


def _add_to_stats(stats: dict, example: Example, result: Converted, num_classes: int) -> None:
    record = result.record
    stats["count"] += 1
    grade_key = str(record.grade)
    stats["grade_histogram"][grade_key] = stats["grade_histogram"].get(grade_key, 0) + 1
    stats["with_grade"] += int(record.grade >= 0)
    if result.pixel_counts is not None:
        stats["with_mask"] += 1
        for c in range(num_classes):
            stats["class_pixel_counts"][c] += int(result.pixel_counts[c])
        stats["ignore_pixels"] += int(result.pixel_counts[IGNORE_LABEL])
    if not result.retina_found:
        logging.warning("%s: no retina disc found against a dark border; kept uncropped",
                        example.image_path)
        stats["no_retina_found"].append(example.image_id)


def _skipped_info(skipped: int) -> str:
    return f"skipped {skipped}"


def _convert_shard(pool: ThreadPoolExecutor, members: Sequence[Example], path: str,
                   options: ConvertOptions, fingerprint: dict, bar: ProgressBar,
                   skipped_before: int) -> dict:
    """Convert one shard's examples in parallel and write the shard, then its stats.
    ``skipped_before``: images the earlier shards skipped (for the progress line)."""
    num_classes = len(options.class_names)
    stats = _new_stats(fingerprint, num_classes)
    results = pool.map(lambda e: convert_example(e, options), members)

    def records():
        for example, result in zip(members, results):  # in input order: reproducible shards
            if result.record is None:
                logging.warning("Skipping %s: %s", example.image_path, result.skip_reason)
                stats["skipped"].append({"id": example.image_id, "file": example.image_path,
                                         "reason": result.skip_reason})
            else:
                _add_to_stats(stats, example, result, num_classes)
            bar.advance(info=_skipped_info(skipped_before + len(stats["skipped"])))
            if result.record is not None:
                yield result.record

    tfrecords.write_shard(records(), path)
    # Stats go last: a shard with final name but no stats is redone on resume.
    write_json_atomically(_stats_path(options.output, path), stats)
    return stats


def _finished_stats(out_dir: str, path: str, fingerprint: dict) -> Optional[dict]:
    """The saved stats of a complete shard made with the same options, else None."""
    stats_path = _stats_path(out_dir, path)
    if not (os.path.isfile(path) and os.path.isfile(stats_path)):
        return None
    try:
        with open(stats_path, encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return None
    return stats if stats.get("options") == fingerprint else None


def _describe_changes(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                     for k in keys if old.get(k) != new.get(k))


def _clear_or_check_previous_run(options: ConvertOptions, fingerprint: dict,
                                 manifest: dict) -> None:
    """With --overwrite delete the split's old output; else refuse to resume one made
    with other options or input (mixed shards would be silently inconsistent)."""
    out, split = options.output, options.split
    if options.overwrite:
        old = _split_files(out, split)
        if old:
            logging.warning("--overwrite: removing %d old file(s) of split %r in %s",
                            len(old), split, out)
        for path, _ in old:
            os.remove(path)
        if split in manifest.get("splits", {}):
            # Until the new manifest is written, nothing may claim the split is finished.
            tfrecords.write_manifest(out, _updated_manifest(manifest, split, None))
        return
    previous = [manifest.get("splits", {}).get(split, {}).get("options")]
    for path, num_shards in _split_files(out, split):
        if num_shards != fingerprint["num_shards"]:
            previous.append({**fingerprint, "num_shards": num_shards})
        elif path.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as f:
                    previous.append(json.load(f).get("options"))
            except (OSError, ValueError):
                previous.append({"stats file": f"{path} (unreadable)"})
    changed = [p for p in previous if p is not None and p != fingerprint]
    if changed:
        raise ConfigError(
            f"{out} already holds split {split!r} converted with other options or input "
            f"({_describe_changes(changed[0], fingerprint)}); pass --overwrite to replace it "
            "or choose another --output")


# --- manifest ------------------------------------------------------------------------

def _split_entry(options: ConvertOptions, fingerprint: dict, shard_stats: Sequence[dict]) -> dict:
    """The manifest's record of one split, summed over its shards' stats.

    Keys: ``source`` (format, path), ``options`` (everything that fixes the output, incl.
    a digest of the record list), ``num_shards``, ``files``, ``count``, ``with_grade``,
    ``with_mask``, ``grade_histogram``, ``class_pixel_counts`` / ``class_pixel_frequency``
    (stored masks, ignore excluded), ``ignore_pixels``, ``skipped`` (id, file, reason) and
    ``no_retina_found`` (ids kept uncropped).
    """
    num_shards, class_names = fingerprint["num_shards"], options.class_names
    entry = {
        "source": {"format": options.format, "path": fingerprint["input"]},
        "options": fingerprint,
        "num_shards": num_shards,
        "files": [os.path.basename(tfrecords.shard_path("", options.split, k, num_shards))
                  for k in range(num_shards)],
        "skipped": [item for stats in shard_stats for item in stats["skipped"]],
        "no_retina_found": [i for stats in shard_stats for i in stats["no_retina_found"]],
    }
    for key in ("count", "with_grade", "with_mask", "ignore_pixels"):
        entry[key] = sum(stats[key] for stats in shard_stats)
    histogram: Dict[str, int] = {}
    for stats in shard_stats:
        for grade, n in stats["grade_histogram"].items():
            histogram[grade] = histogram.get(grade, 0) + n
    entry["grade_histogram"] = dict(sorted(histogram.items(), key=lambda kv: int(kv[0])))
    pixels = [sum(stats["class_pixel_counts"][c] for stats in shard_stats)
              for c in range(len(class_names))]
    labelled = sum(pixels)
    entry["class_pixel_counts"] = dict(zip(class_names, pixels))
    # Frequencies over labelled (non-ignore) pixels, the usual input to class weights.
    entry["class_pixel_frequency"] = {name: (n / labelled if labelled else 0.0)
                                      for name, n in zip(class_names, pixels)}
    return entry


def _updated_manifest(manifest: dict, split: str, entry: Optional[dict]) -> dict:
    """``manifest`` with ``split``'s entry replaced (or removed when ``entry`` is None).

    ``manifest.json``: ``version`` (stamped by ``tfrecords.write_manifest``),
    ``class_names`` (of the mask splits), ``counts`` (records per split) and per split
    under ``splits`` the entry of ``_split_entry``.
    """
    splits = {name: e for name, e in manifest.get("splits", {}).items() if name != split}
    if entry is not None:
        splits[split] = entry
    splits = dict(sorted(splits.items()))
    # Mask splits share one class list (_check_class_names); graded splits have none.
    class_names = next((e["options"]["class_names"] for e in splits.values()
                        if e["options"]["class_names"]), [])
    return {"class_names": class_names,
            "counts": {name: e["count"] for name, e in splits.items()},
            "splits": splits}


def _check_class_names(manifest: dict, split: str, class_names: Sequence[str],
                       out_dir: str) -> None:
    """All mask splits of one output directory must share one class list."""
    for other, entry in manifest.get("splits", {}).items():
        theirs = entry.get("options", {}).get("class_names", [])
        if other != split and theirs and class_names and list(class_names) != theirs:
            raise ConfigError(f"{out_dir}: split {other!r} has class_names {theirs} but this run "
                              f"uses {list(class_names)}; convert into another --output")


# --- one split -----------------------------------------------------------------------

def convert_split(options: ConvertOptions, examples: Optional[Sequence[Example]] = None,
                  progress_stream: IO[str] = sys.stderr) -> dict:
    """Convert one split of a dataset into ``options.output``; returns the manifest.

    ``examples`` defaults to what the format's reader finds in ``options.input``.
    Output: ``<output>/<split>-NNNNN-of-NNNNN.tfrecord`` (record schema in
    ``data_pipelines/tfrecords.py``) and ``<output>/manifest.json``. Records are sorted by
    id and dealt round-robin to shards, so every shard's content is fixed by the input and
    options. A shard is written under a temp name and renamed, then its statistics are
    saved in ``<output>/.shard_stats/``; a re-run skips shards that have both, so an
    interrupted conversion resumes exactly. Re-running with other options or input into
    the same directory is an error; ``overwrite`` deletes the split's earlier output
    first. The manifest is written last.

    Unreadable images are skipped, logged and listed in the manifest (``strict`` makes
    them an error); annotation errors (a mask of another size than its image, label values
    that are not classes) always stop the run, as in the direct pipeline. Raises
    ConfigError for conflicting options and DataError for bad data.
    """
    options = options.resolved()
    examples = (sort_examples(examples, options.input) if examples is not None
                else load_examples(options))
    num_shards = resolve_num_shards(options, len(examples))
    fingerprint = options.fingerprint(num_shards, examples)
    os.makedirs(os.path.join(options.output, STATS_DIR), exist_ok=True)
    manifest_path = os.path.join(options.output, tfrecords.MANIFEST_NAME)
    manifest = tfrecords.read_manifest(options.output) if os.path.exists(manifest_path) else {}
    _check_class_names(manifest, options.split, options.class_names, options.output)
    _clear_or_check_previous_run(options, fingerprint, manifest)

    logging.info("Converting %d %s records of %s into %d shard(s) in %s", len(examples),
                 options.format, options.input, num_shards, options.output)
    bar = ProgressBar(len(examples), desc=f"convert {options.split}", unit="img",
                      stream=progress_stream)
    shard_stats: List[dict] = []
    skipped = 0
    with ThreadPoolExecutor(max_workers=options.workers or os.cpu_count() or 1) as pool:
        for shard in range(num_shards):
            members = examples[shard::num_shards]  # round-robin over the sorted records
            path = tfrecords.shard_path(options.output, options.split, shard, num_shards)
            stats = _finished_stats(options.output, path, fingerprint)
            if stats is not None:
                logging.info("Resuming: %s is complete, skipping it", os.path.basename(path))
                skipped += len(stats["skipped"])
                bar.advance(len(members), info=_skipped_info(skipped), resumed=True)
            else:
                stats = _convert_shard(pool, members, path, options, fingerprint, bar, skipped)
                skipped += len(stats["skipped"])
            shard_stats.append(stats)
    bar.close(info=_skipped_info(skipped))
    entry = _split_entry(options, fingerprint, shard_stats)
    if entry["count"] == 0:
        raise DataError(f"{options.input}: none of {len(examples)} images could be read "
                        f"(first: {entry['skipped'][0]['reason']})")
    manifest = _updated_manifest(manifest, options.split, entry)
    tfrecords.write_manifest(options.output, manifest)  # last: marks the split finished
    logging.info("Wrote %d records (%d skipped) to %s", entry["count"], len(entry["skipped"]),
                 options.output)
    return tfrecords.read_manifest(options.output)
