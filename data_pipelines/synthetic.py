"""The embedded synthetic fundus data set: DR-graded images and lesion masks.

    coopseg-synth --out_dir=/tmp/coopseg_synth --num_graded_train=2000

No real DR data can be downloaded here, so the demo and the tests train on retina-like
images whose lesions follow the DR grade, in the real formats (layout: docs/data.md).
"""
from __future__ import annotations

import concurrent.futures
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from absl import app, flags, logging

from coopseg.config import (LESION_CLASSES, LESION_PRIORITY, NUM_GRADES, ConfigError,
                            ExperimentConfig)
from coopseg.utils.console import run_program
from coopseg.utils.progress import ProgressBar
from data_pipelines import synthetic_draw as draw
from data_pipelines import synthetic_lesions as lesions
from data_pipelines.atomic_dir import write_directory_atomically
from data_pipelines.records import DataError

GENERATOR_VERSION = 1
MANIFEST = "synthetic.json"
GRADED_SPLITS = ("graded_train", "graded_val")
LESION_SPLITS = ("lesions_train", "lesions_val")
_SPLIT_CODES = {"graded_train": 1, "graded_val": 2, "lesions_train": 3, "lesions_val": 4}
_GRADE_STREAM = 1_000_003  # keeps per-patient grade draws apart from image seeds

# EyePACS is ~73/7/15/2.5/2 %; a little more balanced so a small demo learns every grade.
GRADED_GRADE_PROBS = (0.45, 0.15, 0.20, 0.10, 0.10)
# An annotated lesion set is chosen to contain lesions (the paper's was picked by
# ophthalmologists), so it is biased towards DR-positive grades.
LESION_GRADE_PROBS = (0.15, 0.20, 0.30, 0.20, 0.15)
# The second eye of a patient has the same grade or a neighbouring one.
FELLOW_EYE_DELTA = ((-1, 0, 1), (0.2, 0.6, 0.2))


# ---------------------------------------------------------------- one image


def render_fundus(rng_seed: int, grade: int, image_size: int = 256, lesion_bias: float = 1.0,
                  right_eye: Optional[bool] = None) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """One synthetic fundus image of DR ``grade`` and its lesion masks.

    Args:
      rng_seed: seeds the image's own generator; the same seed gives the same pixels.
      grade: DR grade 0-4; picks lesion kinds and counts (``synthetic_lesions.DR_LESION_COUNTS``).
      image_size: side in pixels; anatomy and lesions scale with it.
      lesion_bias: multiplies every lesion count (0 draws no lesions, 2 twice as many).
      right_eye: puts the optic disc on the right (nasal) side; None picks at random.
    Returns:
      (image uint8 HxWx3 RGB, {class_name: uint8 HxW 0/1} for every foreground class of
      ``LESION_CLASSES``). Masks overlap where lesions do; lesions are drawn in reverse
      ``LESION_PRIORITY`` order, so the class that wins an overlap is the one on top.
    """
    if grade not in range(NUM_GRADES):
        raise ConfigError(f"grade must be in 0..{NUM_GRADES - 1}, got {grade}")
    if image_size < 32:
        raise ConfigError(f"image_size must be >= 32, got {image_size}")
    if lesion_bias < 0:
        raise ConfigError(f"lesion_bias must be >= 0, got {lesion_bias}")
    rng = np.random.default_rng(rng_seed)
    if right_eye is None:
        right_eye = bool(rng.random() < 0.5)
    retina = draw.draw_retina(rng, image_size, right_eye)
    draw.draw_vessels(rng, retina, neovascular=grade == NUM_GRADES - 1)
    masks = {name: np.zeros((image_size, image_size), bool) for name in LESION_CLASSES[1:]}
    for name in reversed(LESION_PRIORITY):
        lesions.draw_lesions(rng, retina, name, masks[name],
                             lesions.lesion_count(rng, name, grade, lesion_bias))
    image = draw.finish(rng, retina)
    inside = retina.fov_alpha >= 1.0
    return image, {name: (mask & inside).astype(np.uint8) for name, mask in masks.items()}


# ---------------------------------------------------------------- what to generate


@dataclass(frozen=True)
class _Item:
    split: str
    image_id: str
    grade: int
    seed: int
    right_eye: bool


def _image_seed(seed: int, split: str, index: int) -> int:
    """Every image is rendered from its own generator seeded by (seed, split, index), so
    an image does not depend on the size of the set or on the order images are made in."""
    return int(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]).generate_state(1)[0])


def _graded_items(seed: int, split: str, count: int) -> List[_Item]:
    """Kaggle-style pairs ``<patient>_left``, ``<patient>_right`` with correlated grades.

    Train patient ids end in 0-4 and val ids in 5-9, so the splits never share a patient
    whatever their sizes.
    """
    items: List[_Item] = []
    offset = 5 if split.endswith("val") else 0
    for patient in range((count + 1) // 2):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], patient, _GRADE_STREAM])
        first = int(rng.choice(NUM_GRADES, p=GRADED_GRADE_PROBS))
        delta = rng.choice(FELLOW_EYE_DELTA[0], p=FELLOW_EYE_DELTA[1])
        fellow = int(np.clip(first + delta, 0, NUM_GRADES - 1))
        patient_id = 10 * (patient + 1) + offset + int(rng.integers(0, 5))
        for eye, grade in (("left", first), ("right", fellow))[:count - len(items)]:
            seed_i = _image_seed(seed, split, len(items))
            items.append(_Item(split, f"{patient_id}_{eye}", grade, seed_i, eye == "right"))
    return items


def _lesion_items(seed: int, split: str, count: int) -> List[_Item]:
    items = []
    for index in range(count):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index, _GRADE_STREAM])
        grade = int(rng.choice(NUM_GRADES, p=LESION_GRADE_PROBS))
        items.append(_Item(split, f"{split}_{index:05d}", grade,
                           _image_seed(seed, split, index), bool(rng.random() < 0.5)))
    return items


# ---------------------------------------------------------------- writing


def _imwrite(path: Path, array: np.ndarray, params: Tuple[int, ...] = ()) -> None:
    if not cv2.imwrite(str(path), array, list(params)):
        raise DataError(f"{path}: OpenCV could not write this image")


def _write_item(root: Path, item: _Item, image_size: int) -> np.ndarray:
    """Render and write one image (and its masks); returns per-class pixel counts."""
    image, masks = render_fundus(item.seed, item.grade, image_size, right_eye=item.right_eye)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR
    split_dir = root / item.split
    jpeg = (cv2.IMWRITE_JPEG_QUALITY, 95)
    if item.split in GRADED_SPLITS:
        _imwrite(split_dir / "train" / f"{item.image_id}.jpeg", bgr, jpeg)
    else:
        _imwrite(split_dir / "images" / f"{item.image_id}.jpg", bgr, jpeg)
        for name, mask in masks.items():
            if mask.any():
                _imwrite(split_dir / "masks" / name / f"{item.image_id}.png", mask * np.uint8(255))
    foreground = np.any(np.stack(list(masks.values())), axis=0)
    return np.array([np.count_nonzero(~foreground)] + [np.count_nonzero(m) for m in masks.values()],
                    np.int64)


def _write_csv(path: Path, items: List[_Item]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "level"])
        writer.writerows((item.image_id, item.grade) for item in items)


def _params(seed: int, image_size: int, counts: Dict[str, int]) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "image_size": image_size,
            "counts": counts}


def _write_all(root: Path, params: dict, workers: int, progress: bool) -> dict:
    seed, size, counts = params["seed"], params["image_size"], params["counts"]
    plan = {split: _graded_items(seed, split, counts[split]) for split in GRADED_SPLITS}
    plan.update({split: _lesion_items(seed, split, counts[split]) for split in LESION_SPLITS})
    for split, items in plan.items():
        if split in GRADED_SPLITS:
            (root / split / "train").mkdir(parents=True)
            _write_csv(root / split / "trainLabels.csv", items)
        else:
            for name in LESION_CLASSES[1:]:
                (root / split / "masks" / name).mkdir(parents=True)
            (root / split / "images").mkdir()
            _write_csv(root / split / "grades.csv", items)
            # The mask-set reader checks classes.txt against the run's class list.
            (root / split / "classes.txt").write_text("\n".join(LESION_CLASSES) + "\n")

    pixels = {split: np.zeros(len(LESION_CLASSES), np.int64) for split in plan}
    items = [item for split_items in plan.values() for item in split_items]
    bar = ProgressBar(len(items), desc="synthetic", unit="images") if progress and items else None
    # Threads, not processes: cv2 and numpy release the GIL for the pixel work, and
    # forking a trainer that already runs TensorFlow's thread pools can deadlock.
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_write_item, root, item, size): item for item in items}
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                pixels[futures[future].split] += future.result()
                if bar:
                    bar.update(done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if bar:
        bar.close()

    total = {split: max(1, len(plan[split]) * size * size) for split in plan}
    return {
        **params,
        "class_names": list(LESION_CLASSES),
        "class_pixel_fractions": {
            split: {name: float(n) / total[split] for name, n in zip(LESION_CLASSES, pixels[split])}
            for split in LESION_SPLITS},
        "grade_histogram": {
            split: np.bincount([i.grade for i in plan[split]], minlength=NUM_GRADES).tolist()
            for split in plan},
    }


def generate_dataset(out_dir: str, *, num_graded_train: int, num_graded_val: int,
                     num_masks_train: int, num_masks_val: int, image_size: int = 256,
                     seed: int = 0, workers: Optional[int] = None, progress: bool = True) -> dict:
    """Write the synthetic set to ``out_dir`` (replacing an older one); returns the manifest.

    Retina-like images (``synthetic_draw``) whose lesion kinds and counts follow the DR
    grade the way the ETDRS scale describes them (``synthetic_lesions``), written in the
    real formats, so the real readers load them::

        out_dir/graded_train/trainLabels.csv        image,level       (EyePACS layout)
        out_dir/graded_train/train/<patient>_<left|right>.jpeg
        out_dir/graded_val/...                      same, other patients
        out_dir/lesions_train/images/<id>.jpg       (generic mask-set layout)
        out_dir/lesions_train/masks/<class>/<id>.png   0/255; absent = empty mask
        out_dir/lesions_train/grades.csv            image,level (for reference)
        out_dir/lesions_train/classes.txt           LESION_CLASSES, one a line
        out_dir/lesions_val/...
        out_dir/synthetic.json                      manifest: parameters, grade and pixel stats

    Everything is written into a temporary sibling directory first and renamed into
    place at the end, so an interrupted run never leaves a half-written set that
    ``ensure_dataset`` would reuse.
    """
    counts = {"graded_train": num_graded_train, "graded_val": num_graded_val,
              "lesions_train": num_masks_train, "lesions_val": num_masks_val}
    for name, value in list(counts.items()) + [("seed", seed)]:
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"synthetic: {name} must be an integer >= 0, got {value!r}")
    if image_size < 32:
        raise ConfigError(f"synthetic: image_size must be >= 32, got {image_size}")
    workers = workers or min(8, os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError(f"synthetic: workers must be >= 1, got {workers}")
    params = _params(int(seed), int(image_size), {k: int(v) for k, v in counts.items()})
    manifest = write_directory_atomically(Path(out_dir), MANIFEST,
                                          lambda tmp: _write_all(tmp, params, workers, progress))
    logging.info("synthetic: wrote %d images to %s", sum(counts.values()), out_dir)
    return manifest


def ensure_dataset(out_dir: str, *, num_graded_train: int, num_graded_val: int,
                   num_masks_train: int, num_masks_val: int, image_size: int = 256,
                   seed: int = 0, workers: Optional[int] = None, progress: bool = True) -> dict:
    """The manifest of the set in ``out_dir``, generating it only if missing or different.

    Same arguments as ``generate_dataset``; the set is reused when its ``synthetic.json``
    records the same seed, image size, counts and generator version.
    """
    counts = {"graded_train": num_graded_train, "graded_val": num_graded_val,
              "lesions_train": num_masks_train, "lesions_val": num_masks_val}
    manifest_path = Path(out_dir) / MANIFEST
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            logging.warning("synthetic: %s unreadable (%s); regenerating", manifest_path, err)
            manifest = {}
        wanted = _params(seed, image_size, counts)
        complete = all((Path(out_dir) / split).is_dir() for split in _SPLIT_CODES)
        if complete and all(manifest.get(key) == value for key, value in wanted.items()):
            logging.info("synthetic: reusing %s", out_dir)
            return manifest
        logging.info("synthetic: %s was made with other parameters; regenerating", out_dir)
    return generate_dataset(out_dir, num_graded_train=num_graded_train,
                            num_graded_val=num_graded_val, num_masks_train=num_masks_train,
                            num_masks_val=num_masks_val, image_size=image_size, seed=seed,
                            workers=workers, progress=progress)


SYNTHETIC_COUNTS = {"paper": (4000, 1000, 800, 200), "small": (640, 160, 192, 64),
                    "tiny": (48, 16, 16, 8)}


def use_synthetic_data(config: ExperimentConfig, data_dir: str, scale: str,
                       graded_train: Optional[int] = None) -> dict:
    """Generate (or reuse) the embedded synthetic set of ``scale`` in ``data_dir`` and point
    ``config.data`` at it (``graded_train``: that many graded images, the others scaled)."""
    gt, gv, mt, mv = SYNTHETIC_COUNTS[scale]
    if graded_train:
        factor = graded_train / gt
        gt, gv, mt, mv = graded_train, max(8, int(gv * factor)), max(8, int(mt * factor)), max(4, int(mv * factor))
    manifest = ensure_dataset(data_dir, num_graded_train=gt, num_graded_val=gv,
                              num_masks_train=mt, num_masks_val=mv,
                              image_size=config.data.resize_size, seed=config.data.seed)
    d = config.data
    d.graded_format, d.masks_format = "eyepacs", "generic"
    d.graded_train = os.path.join(data_dir, "graded_train")
    d.graded_val = os.path.join(data_dir, "graded_val")
    d.masks_train = os.path.join(data_dir, "lesions_train")
    d.masks_val = os.path.join(data_dir, "lesions_val")
    return manifest


# ---------------------------------------------------------------- command line


def _define_flags() -> None:
    """Flags exist only when the CLI runs, so importing this module defines none."""
    definitions = (
        (flags.DEFINE_string, "out_dir", None, "Directory to write the synthetic set into."),
        (flags.DEFINE_integer, "num_graded_train", 1000, "Graded (EyePACS-style) train images."),
        (flags.DEFINE_integer, "num_graded_val", 200, "Graded validation images."),
        (flags.DEFINE_integer, "num_masks_train", 200, "Lesion-mask train images."),
        (flags.DEFINE_integer, "num_masks_val", 50, "Lesion-mask validation images."),
        (flags.DEFINE_integer, "image_size", 256, "Image side in pixels."),
        (flags.DEFINE_integer, "seed", 0, "Seed; the same seed writes the same set."),
        (flags.DEFINE_integer, "workers", 0, "Parallel writer threads; 0 = one per core (max 8)."),
        (flags.DEFINE_bool, "force", False, "Regenerate even if an identical set exists."),
    )
    for define, name, default, help_text in definitions:
        if name not in flags.FLAGS:
            define(name, default, help_text)
    flags.mark_flag_as_required("out_dir")


def _main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    kwargs = dict(num_graded_train=f.num_graded_train, num_graded_val=f.num_graded_val,
                  num_masks_train=f.num_masks_train, num_masks_val=f.num_masks_val,
                  image_size=f.image_size, seed=f.seed, workers=f.workers or None)
    build = generate_dataset if f.force else ensure_dataset
    manifest = build(f.out_dir, **kwargs)
    print(json.dumps({k: manifest[k] for k in ("counts", "grade_histogram")}, indent=2))


def run() -> None:
    """Console script ``coopseg-synth``."""
    _define_flags()
    run_program(_main, __name__)


if __name__ == "__main__":
    run()
