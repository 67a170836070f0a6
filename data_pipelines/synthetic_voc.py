"""A synthetic PASCAL VOC 2012 segmentation set, read by ``data_pipelines.voc`` unchanged.

    coopseg-synth-voc --out=data/synthetic_voc --train=500 --val=150

DecoupledNet needs VOC's 20 classes + background, which cannot be downloaded here, so
it runs on this stand-in in the devkit's layout (``generate_voc_dataset``).
"""
from __future__ import annotations

import concurrent.futures
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from absl import app, flags, logging

from coopseg.config import ConfigError
from coopseg.utils.console import run_program
from coopseg.utils.progress import ProgressBar
from data_pipelines import imageio
from data_pipelines import synthetic_voc_shapes as shapes
from data_pipelines.atomic_dir import write_directory_atomically
from data_pipelines.records import DataError
from data_pipelines.voc import VOC_CLASSES, voc_colormap

GENERATOR_VERSION = 1
MANIFEST = "synthetic_voc.json"
SPLITS = ("train", "val")
_SPLIT_CODES = {"train": 1, "val": 2}
_SPLIT_YEARS = {"train": 2007, "val": 2008}  # disjoint id ranges whatever the counts
_CLASS_STREAM = 1_000_003  # keeps the class-schedule draws apart from image seeds

assert shapes.NUM_FOREGROUND == len(VOC_CLASSES) - 1


# ---------------------------------------------------------------- what to generate


@dataclass(frozen=True)
class _Item:
    split: str
    image_id: str
    seed: int
    main_class: int


def _items(seed: int, split: str, count: int) -> List[_Item]:
    """Per-image seeds and main classes; each block of 20 is a permutation of the classes.

    Each image is drawn from its own generator seeded by (seed, split, index), so an
    image does not depend on the set size or on write order. Each block of 20 images
    has every class once as its main class, so classes stay balanced and DecoupledNet's
    "N strong annotations per class" subsets exist. Ids are ``2007_000001``... for train
    and ``2008_000001``... for val.
    """
    items = []
    for index in range(count):
        block = np.random.default_rng([seed, _SPLIT_CODES[split], index // 20, _CLASS_STREAM])
        main = int(block.permutation(shapes.NUM_FOREGROUND)[index % 20]) + 1
        image_seed = int(np.random.SeedSequence([seed, _SPLIT_CODES[split], index])
                         .generate_state(1)[0])
        items.append(_Item(split, f"{_SPLIT_YEARS[split]}_{index + 1:06d}", image_seed, main))
    return items


def _write_item(voc: Path, item: _Item, image_size: int) -> Tuple[int, ...]:
    """Render and write one image and its label map; returns its classes."""
    drawn = shapes.render_voc_image(item.seed, item.main_class, image_size)
    path = voc / "JPEGImages" / f"{item.image_id}.jpg"
    if not cv2.imwrite(str(path), cv2.cvtColor(drawn.image, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise DataError(f"{path}: OpenCV could not write this image")
    imageio.write_palette_png(str(voc / "SegmentationClass" / f"{item.image_id}.png"),
                              drawn.label, voc_colormap())
    return drawn.classes


def _params(seed: int, image_size: int, num_train: int, num_val: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "image_size": image_size,
            "counts": {"train": num_train, "val": num_val}}


def _write_all(root: Path, params: dict, workers: int, progress: bool) -> dict:
    voc = root / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True)
    plan = {split: _items(params["seed"], split, params["counts"][split]) for split in SPLITS}
    for name, ids in (("train", plan["train"]), ("val", plan["val"]),
                      ("trainval", plan["train"] + plan["val"])):
        (voc / "ImageSets" / "Segmentation" / f"{name}.txt").write_text(
            "".join(f"{item.image_id}\n" for item in ids), encoding="utf-8")
    items = plan["train"] + plan["val"]
    bar = ProgressBar(len(items), desc="synthetic VOC", unit="images") if progress else None
    classes: Dict[str, Tuple[int, ...]] = {}
    # Threads, as in ``synthetic``: cv2/numpy/zlib release the GIL, and forking a
    # process that already runs TensorFlow's thread pools can deadlock.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_write_item, voc, item, params["image_size"]): item
                   for item in items}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                classes[futures[future].image_id] = future.result()
                if bar:
                    bar.update(done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if bar:
        bar.close()
    per_class = {split: {name: sum(c in classes[i.image_id] for i in plan[split])
                         for c, name in enumerate(VOC_CLASSES) if c}
                 for split in SPLITS}
    return {
        **params,
        "root": "VOC2012",  # relative on disk, so a set is byte-identical wherever it lives
        "class_names": list(VOC_CLASSES),
        "class_image_counts": per_class,
        "classes_per_image": {split: np.bincount([len(classes[i.image_id]) for i in plan[split]],
                                                 minlength=4)[1:].tolist() for split in SPLITS},
        "image_classes": {i.image_id: list(classes[i.image_id]) for i in items},
    }


def _resolved(manifest: dict, out: Path) -> dict:
    return {**manifest, "root": str((out / manifest["root"]).resolve())}


def _complete(out: Path, counts: Dict[str, int]) -> bool:
    """Whether split files and image/label folders hold the counts the manifest records."""
    voc, total = out / "VOC2012", counts["train"] + counts["val"]
    try:
        listed = {split: (voc / "ImageSets" / "Segmentation" / f"{split}.txt")
                  .read_text(encoding="utf-8").split() for split in ("train", "val", "trainval")}
        files = [len(os.listdir(voc / d)) for d in ("JPEGImages", "SegmentationClass")]
    except OSError:
        return False
    return (files == [total, total] and len(listed["trainval"]) == total
            and all(len(listed[s]) == counts[s] for s in SPLITS))


def _validate(num_train: int, num_val: int, image_size: int, seed: int,
              workers: Optional[int]) -> int:
    for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1),
                             ("image_size", image_size, 32), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ConfigError(f"synthetic_voc: {name} must be an integer >= {low}, got {value!r}")
    workers = workers or min(8, os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError(f"synthetic_voc: workers must be >= 1, got {workers}")
    return workers


def generate_voc_dataset(out_dir: str, *, num_train: int, num_val: int, image_size: int = 144,
                         seed: int = 0, workers: Optional[int] = None,
                         progress: bool = True) -> dict:
    """Write the set to ``out_dir`` (replacing an older one); returns the manifest.

    Objects are class-specific shape x texture x hue combinations
    (``synthetic_voc_shapes``) on cluttered backgrounds, and the files follow the devkit::

        out_dir/VOC2012/JPEGImages/<id>.jpg                 JPEG, quality 90
        out_dir/VOC2012/SegmentationClass/<id>.png          palette PNG, VOC colormap;
                                                            index = class, 255 = void border
        out_dir/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
        out_dir/synthetic_voc.json                          manifest (see ``_write_all``)

    Like VOC, most images hold one class (1-3 objects of 1-3 classes), and a void band a
    few pixels wide covers every object's outline.

    The manifest's ``root`` (``out_dir/VOC2012``, absolute) is what ``load_voc`` takes.
    Everything is written to a temporary sibling first and renamed into place, so an
    interrupted run never leaves a half-written set behind.
    """
    workers = _validate(num_train, num_val, image_size, seed, workers)
    out = Path(out_dir)
    params = _params(int(seed), int(image_size), int(num_train), int(num_val))
    manifest = write_directory_atomically(out, MANIFEST,
                                          lambda tmp: _write_all(tmp, params, workers, progress))
    logging.info("synthetic_voc: wrote %d images to %s", num_train + num_val, out)
    return _resolved(manifest, out)


def ensure_voc_dataset(out_dir: str, *, num_train: int, num_val: int, image_size: int = 144,
                       seed: int = 0, workers: Optional[int] = None,
                       progress: bool = True) -> dict:
    """The manifest of the set in ``out_dir``, generating it only if missing or different.

    Reused when ``synthetic_voc.json`` records the same seed, size, counts and generator
    version and the folders hold that many files; otherwise regenerated.
    """
    _validate(num_train, num_val, image_size, seed, workers)
    out = Path(out_dir)
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    wanted = _params(seed, image_size, num_train, num_val)
    if (isinstance(manifest, dict) and all(manifest.get(k) == v for k, v in wanted.items())
            and _complete(out, wanted["counts"])):
        logging.info("synthetic_voc: reusing %s", out)
        return _resolved(manifest, out)
    if manifest is not None:
        logging.info("synthetic_voc: %s differs or is incomplete; regenerating", out)
    return generate_voc_dataset(out_dir, num_train=num_train, num_val=num_val,
                                image_size=image_size, seed=seed, workers=workers,
                                progress=progress)


# ---------------------------------------------------------------- command line


def _define_flags() -> None:
    """Flags exist only when the CLI runs, so importing this module defines none."""
    for define, name, default, help_text in (
            (flags.DEFINE_string, "out", None, "Directory to write the set into."),
            (flags.DEFINE_integer, "train", 500, "Train images (>= 1)."),
            (flags.DEFINE_integer, "val", 150, "Validation images (>= 1)."),
            (flags.DEFINE_integer, "size", 144, "Image side in pixels (>= 32)."),
            (flags.DEFINE_integer, "seed", 0, "Seed; the same seed writes the same bytes."),
            (flags.DEFINE_integer, "workers", 0, "Writer threads; 0 = one per core (max 8)."),
            (flags.DEFINE_bool, "force", False, "Regenerate even if an identical set exists.")):
        if name not in flags.FLAGS:
            define(name, default, help_text)
    flags.mark_flag_as_required("out")


def _main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    build = generate_voc_dataset if f.force else ensure_voc_dataset
    try:
        manifest = build(f.out, num_train=f.train, num_val=f.val, image_size=f.size,
                         seed=f.seed, workers=f.workers or None)
    except (ConfigError, DataError) as err:
        raise SystemExit(f"error: {err}") from err
    per_class = manifest["class_image_counts"]["train"].values()
    print(f"synthetic VOC set in {f.out}: VOC root {manifest['root']}\n"
          f"  images: {manifest['counts']['train']} train, {manifest['counts']['val']} val, "
          f"{manifest['image_size']} px, seed {manifest['seed']}\n"
          f"  train images per class: min {min(per_class)}, max {max(per_class)}")


def run() -> None:
    """Command-line entry point."""
    _define_flags()
    run_program(_main, __name__)


if __name__ == "__main__":
    run()
