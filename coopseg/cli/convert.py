"""coopseg-convert: a dataset folder -> sharded TFRecords, preprocessed once.

    coopseg-convert --format=eyepacs --input=/data/eyepacs --output=/data/eyepacs_tfr \\
        --split=train --size=256 --crop_retina --nograham --encoding=png --workers=8

What a conversion does (retina crop, resize, shards, manifest.json, resume): docs/data.md.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, List, Optional, Sequence, Set, Tuple

from absl import app, flags

from coopseg.config import ConfigError
from coopseg.utils.console import run_program
from data_pipelines.datasets import FORMATS
from data_pipelines.records import DataError

if TYPE_CHECKING:  # the converter loads TensorFlow: imported where it runs
    from data_pipelines.conversion import ConvertOptions

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Define the converter's flags (called by ``run``, so importing this module
    defines none and other CLIs in the same process are unaffected)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("format", None, list(FORMATS), "Input layout (see data_pipelines/).", **fv)
    flags.DEFINE_string("input", None, "Dataset folder to convert.", **fv)
    flags.DEFINE_string("output", None, "Output folder for shards and manifest.json.", **fv)
    flags.DEFINE_string("split", "train", "Name of the output split (file prefix).", **fv)
    flags.DEFINE_string("source_split", "", "Reader split for IDRiD (train|test) and VOC "
                        "(train|val|trainval); default: --split.", **fv)
    flags.DEFINE_integer("size", 256, "Stored image side in pixels (paper: 256).",
                         lower_bound=8, **fv)
    flags.DEFINE_bool("crop_retina", None, "Crop the black border to the retina disc "
                      "(default: on for fundus formats, off for VOC's photos).", **fv)
    flags.DEFINE_integer("retina_threshold", 10, "Luminance above which a pixel is retina.",
                         lower_bound=0, upper_bound=254, **fv)
    flags.DEFINE_bool("graham", False, "Ben Graham's local colour normalisation.", **fv)
    flags.DEFINE_enum("encoding", "png", ["png", "jpeg"],
                      "Image encoding (masks are always PNG).", **fv)
    flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality.", lower_bound=1, upper_bound=100, **fv)
    flags.DEFINE_integer("num_shards", 0, "Number of shards; 0 = from --shard_size.",
                         lower_bound=0, **fv)
    flags.DEFINE_integer("shard_size", 1024, "Records per shard when --num_shards=0.",
                         lower_bound=1, **fv)
    flags.DEFINE_integer("workers", 0, "Conversion threads; 0 = all cores.", lower_bound=0, **fv)
    flags.DEFINE_list("class_names", None, "Mask classes, background first; default: "
                      "config.LESION_CLASSES (idrid, voc: the dataset's own).", **fv)
    flags.DEFINE_list("mask_priority", None, "Overlapping binary masks: the first class listed "
                      "wins; default: config.LESION_PRIORITY (the names among --class_names).",
                      **fv)
    flags.DEFINE_multi_string("reader_arg", [], "key=value passed to the format's reader, "
                              "e.g. --reader_arg=usage=public (EyePACS solution CSV).", **fv)
    flags.DEFINE_bool("strict", False,
                      "Stop at the first unreadable image instead of skipping it.", **fv)
    flags.DEFINE_bool("overwrite", False, "Delete this split's earlier output and convert "
                      "afresh (needed when the options or the input changed).", **fv)
    flags.mark_flags_as_required(["format", "input", "output"], **fv)
    flags.register_validator("input", lambda path: path is None or os.path.isdir(path),
                             message="--input must be an existing directory", **fv)


def options_from_flags(flag_values: flags.FlagValues = FLAGS) -> "ConvertOptions":
    """ConvertOptions from parsed flags (UsageError for a malformed --reader_arg).

    The flags map one to one onto ``data_pipelines.conversion.ConvertOptions``, whose
    docstrings describe what a conversion does. Unreadable images are skipped and listed
    in the manifest (``--strict`` makes them an error); re-running into the same
    ``--output`` with other options is an error unless ``--overwrite``.
    """
    from data_pipelines.conversion import ConvertOptions
    v = flag_values
    return ConvertOptions(
        format=v.format, input=v.input, output=v.output, split=v.split,
        source_split=v.source_split, size=v.size, crop_retina=v.crop_retina,
        retina_threshold=v.retina_threshold, graham=v.graham, encoding=v.encoding,
        jpeg_quality=v.jpeg_quality, num_shards=v.num_shards, shard_size=v.shard_size,
        workers=v.workers, class_names=tuple(v.class_names or ()),
        mask_priority=tuple(v.mask_priority) if v.mask_priority is not None else None,
        reader_args=tuple(_key_value(item) for item in v.reader_arg),
        strict=v.strict, overwrite=v.overwrite)


def _key_value(item: str) -> Tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise app.UsageError(f"--reader_arg={item!r}: expected key=value")
    return key.strip(), value.strip()


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Here, not at the top: --help and flag errors answer without loading TensorFlow.
    from data_pipelines.conversion import convert_split
    try:
        manifest = convert_split(options_from_flags())
    except (ConfigError, DataError) as err:
        sys.exit(f"coopseg-convert: error: {err}")
    entry = manifest["splits"][FLAGS.split]
    print(f"{FLAGS.output}: split {FLAGS.split!r} has {entry['count']} records in "
          f"{entry['num_shards']} shard(s), {len(entry['skipped'])} skipped")
    print("\n".join(next_step_lines(FORMATS[FLAGS.format].kind, FLAGS.output,
                                     set(manifest["splits"]), FLAGS.class_names)))


def next_step_lines(kind: str, output: str, splits: Set[str],
                    class_names: Optional[Sequence[str]]) -> List[str]:
    """The command that trains on a converted set (TFRecords read the ``train`` and
    ``val`` splits), and the conversion still missing for it."""
    if kind == "graded":
        args = f"--graded_format=tfrecord --graded_train={output}"
        args += f" --graded_val={output}" if "val" in splits else ""
        other = "add --masks_format/--masks_train/--masks_val of a mask set for joint training"
        command = f"coopseg-train --mode=clf_only {args}"
    else:
        args = f"--masks_format=tfrecord --masks_train={output}"
        args += f" --masks_val={output}" if "val" in splits else ""
        args += f" --class_names={','.join(class_names)}" if class_names else ""
        other = "add --graded_format/--graded_train/--graded_val of a graded set for joint training"
        command = f"coopseg-train --mode=seg_only {args}"
    lines = []
    if "train" not in splits:
        lines.append("next: convert the training split too (--split=train) before training")
    if "val" not in splits:
        lines.append("next: convert a held-out split too (--split=val, with --source_split "
                     "for IDRiD's or DIARETDB1's test, VOC's val) so the run is validated")
    lines += [f"next: {command}", f"      ({other})"]
    return lines


def run() -> None:
    """Console-script entry point (``coopseg-convert``)."""
    define_flags()
    run_program(main, __name__)


if __name__ == "__main__":
    run()
