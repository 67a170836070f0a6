"""Grade a folder of fundus photos: one CSV row and one overlay PNG per photo.

Each photo gets the preprocessing its model's training data had
(``coopseg.serving.photo_preprocessing``, recorded in the export) and a gradability
check. Every input file gets a row: a file that cannot be read is listed with the
reason, never dropped. The CSV's columns: docs/serving.md.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf

from coopseg.evaluation.figures import write_png
from coopseg.evaluation.metric_tables import REFERABLE_MIN_GRADE, grade_at_least_probability
from coopseg.evaluation.visualize import add_legend, overlay_rgb
from coopseg.serving.photo_preprocessing import Gradability, PhotoPreprocessing, assess_gradability
from coopseg.serving.predictor import Predictor
from coopseg.utils.progress import ProgressBar
from data_pipelines import fundus
from data_pipelines.augment import photo_region, resize_image
from data_pipelines.imageio import read_image_with_note
from data_pipelines.records import DataError

CSV_NAME = "predictions.csv"
OVERLAY_DIR = "overlays"
UNGRADABLE_LEGEND = "UNGRADABLE photo:"


@dataclass
class PreparedPhoto:
    """One input file after preprocessing, or the reason it could not be read."""

    path: str
    model_input: Optional[np.ndarray] = None  # float32 RGB 0..255 [S, S, 3]
    display: Optional[np.ndarray] = None  # uint8 RGB, the photo as the model saw it
    # (height, width) of the photo the model's square view was made from (after the
    # retina crop, if any): where in the view the photo lies (``augment.photo_region``).
    view_shape: Tuple[int, int] = (0, 0)
    retina_found: bool = False
    crop_missed: bool = False  # the retina crop was asked for but found no disc
    gradability: Optional[Gradability] = None
    error: str = ""
    note: str = ""  # what reading changed, e.g. transparency composited on black

    @property
    def gradable(self) -> bool:
        """Whether a grader could judge the photo (False when it was not read)."""
        return self.gradability is not None and self.gradability.gradable


@dataclass
class PredictOptions:
    """How ``predict_folder`` prepares photos and what it writes."""

    batch_size: int = 8
    flip_tta: bool = False
    overlays: bool = True
    overlay_size: int = 512
    # None: what the model's training data went through (``Predictor.preprocessing``).
    crop_retina: Optional[bool] = None
    graham: Optional[bool] = None
    workers: int = 4

    def resolve(self, trained: PhotoPreprocessing) -> PhotoPreprocessing:
        """The model's preprocessing with this run's overrides applied."""
        return dataclasses.replace(
            trained,
            crop_retina=trained.crop_retina if self.crop_retina is None else self.crop_retina,
            graham=trained.graham if self.graham is None else self.graham)


# ---------------------------------------------------------------------- listing inputs

def list_inputs(inputs: Sequence[str], recursive: bool = False) -> List[Tuple[str, str]]:
    """``(path, name)`` for every file named or found in a named folder, in order.

    ``name`` is the path relative to the folder it was found in, or the path as given
    for a file named directly. Hidden files are left out of folders; a named path that does
    not exist is kept, so it gets a row saying so.
    """
    found: List[Tuple[str, str]] = []
    for item in inputs:
        if not os.path.isdir(item):
            found.append((item, item))
            continue
        for root, dirs, files in os.walk(item):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
            for name in sorted(files):
                if not name.startswith("."):
                    path = os.path.join(root, name)
                    found.append((path, os.path.relpath(path, item)))
    return found


def read_input_list(path: str) -> List[str]:
    """Paths listed one per line in a text file (blank lines and ``#`` comments skipped)."""
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip() and not line.startswith("#")]
    except OSError as err:
        raise DataError(f"{path}: cannot read the input list ({err.strerror})") from err


# ---------------------------------------------------------------------- preprocessing

def prepare_photo(path: str, size: int, preprocessing: PhotoPreprocessing,
                  overlay_size: int = 512) -> PreparedPhoto:
    """Read and prepare one photo for a model with ``size`` px inputs, and judge whether
    it is gradable; any DataError (unreadable, corrupt, not an image, missing) becomes
    ``error`` instead of an exception.

    The steps the training data went through: the converter's retina crop and centred
    square padding (``data_pipelines.fundus``) if the training TFRecords had it, the
    evaluation pipeline's pad-to-square and resize (``data_pipelines.augment.resize_image``;
    a photo is never stretched), and Graham
    normalisation if the training data had it; the per-image standardisation happens
    inside the serving function. Gradability (``assess_gradability``): a retina found,
    not too dark, not clipped bright, not smaller than the model's input."""
    try:
        image, note = read_image_with_note(path)
    except DataError as err:
        return PreparedPhoto(path, error=str(err).replace(f"{path}: ", "", 1))
    # The detector runs even when the run does not crop: ``retina_found`` and the
    # gradability checks must not depend on the preprocessing.
    box = fundus.crop_box_to_retina(image, preprocessing.retina_threshold)
    gradability = assess_gradability(image, box, size)
    if preprocessing.crop_retina and box is not None:
        image = fundus.apply_box(image, box, 0)
    model_input = resize_image(tf.constant(image), size).numpy()
    if preprocessing.graham:
        model_input = fundus.graham_normalize(model_input)
    # The photo is shown as the model saw it (retina-cropped if it was), at its own
    # aspect ratio: the model's view pads it to a square, never stretches it.
    height, width = image.shape[:2]
    scale = min(1.0, overlay_size / max(height, width))
    display = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
    return PreparedPhoto(path, model_input.astype(np.float32), display,
                         view_shape=(height, width),
                         retina_found=box is not None,
                         crop_missed=preprocessing.crop_retina and box is None,
                         gradability=gradability, note=note)


# ---------------------------------------------------------------------- rows and images

def csv_columns(predictor: Predictor, outputs: Sequence[str]) -> List[str]:
    """The CSV header for a model with ``outputs`` (keys of its serving signature).

    ``image``, ``status`` (``ok`` | ``unreadable``), ``reason`` (why a file is
    unreadable; for a readable photo, that the retina crop found no disc and used the
    whole frame, or that transparency was composited on black), ``retina_found`` (1/0),
    ``gradable`` (1/0), ``gradable_reason`` (empty when gradable, else the reasons joined
    with ``"; "``; both empty for an unreadable file), ``model_saw_real_photos`` (1, 0 for
    a model trained on synthetic images only, ``unknown``), then per head ``grade``,
    ``p_grade_<g>``, ``p_referable`` (P(grade >= 2)), ``score_<class>`` (image-level labels), ``pixels_<lesion>`` (pixels of each lesion
    class in the model's S x S view of the photo), and ``overlay`` (the PNG, relative
    to the output directory).
    """
    columns = ["image", "status", "reason", "retina_found", "gradable", "gradable_reason",
               "model_saw_real_photos"]
    if "grade_probabilities" in outputs:
        columns += ["grade"] + [f"p_grade_{g}" for g in range(predictor.num_grades)]
        if predictor.num_grades > REFERABLE_MIN_GRADE:
            columns.append("p_referable")
    if "class_scores" in outputs:
        columns += [f"score_{name}" for name in predictor.class_names[1:]]
    if "class_map" in outputs:
        columns += [f"pixels_{name}" for name in predictor.class_names[1:]]
    return columns + ["overlay"]


def prediction_row(photo: PreparedPhoto, name: str, out: Dict[str, np.ndarray], i: int,
                   predictor: Predictor) -> Dict[str, object]:
    """The CSV row of photo ``i`` of a batch's outputs ``out``."""
    notes = ["no retina found: the whole frame was used"] if photo.crop_missed else []
    notes += [photo.note] if photo.note else []
    row: Dict[str, object] = {"image": name, "status": "ok", "reason": "; ".join(notes),
                              "retina_found": int(photo.retina_found),
                              "gradable": int(photo.gradable),
                              "gradable_reason": photo.gradability.reason,
                              "model_saw_real_photos": saw_real_photos(predictor)}
    if "grade_probabilities" in out:
        probs = out["grade_probabilities"][i]
        row["grade"] = int(out["grade"][i])
        row.update({f"p_grade_{g}": f"{p:.4f}" for g, p in enumerate(probs)})
        if predictor.num_grades > REFERABLE_MIN_GRADE:
            p_referable = grade_at_least_probability(probs[None], REFERABLE_MIN_GRADE)[0]
            row["p_referable"] = f"{p_referable:.4f}"
    if "class_scores" in out:
        row.update({f"score_{name}": f"{s:.4f}"
                    for name, s in zip(predictor.class_names[1:], out["class_scores"][i])})
    if "class_map" in out:
        counts = np.bincount(out["class_map"][i].ravel(), minlength=len(predictor.class_names))
        row.update({f"pixels_{name}": int(counts[c])
                    for c, name in enumerate(predictor.class_names) if c > 0})
    return row


def saw_real_photos(predictor: Predictor) -> str:
    """``1`` / ``0`` / ``unknown``: whether the model's training data held real photos."""
    real = (predictor.training_data or {}).get("real_photos")
    return "unknown" if real is None else str(int(real))


def overlay_image(photo: PreparedPhoto, name: str, row: Dict[str, object],
                  out: Dict[str, np.ndarray], i: int, predictor: Predictor) -> np.ndarray:
    """The photo as the model saw it, at its own aspect ratio, the lesion map blended in,
    a legend beside it."""
    num_classes = len(predictor.class_names)
    image = photo.display
    entries: List[Tuple[str, Optional[int]]] = []
    if "grade" in row:
        entries.append((f"grade {row['grade']} (p={out['grade_probabilities'][i].max():.2f})",
                        None))
    if "p_referable" in row:
        entries.append((f"referable DR p={row['p_referable']}", None))
    if "class_map" in out:
        # The class map covers the model's square view: its padding is cut away, so the
        # map lies on the photo at the photo's own shape.
        y0, y1, x0, x1 = photo_region(out["class_map"][i].shape[0], *photo.view_shape)
        image = overlay_rgb(image, out["class_map"][i][y0:y1, x0:x1], num_classes)
        entries += [(f"{cname}: {row[f'pixels_{cname}']} px", c)
                    for c, cname in enumerate(predictor.class_names) if c > 0]
    # Above the grade, so nobody reads the grade of an ungradable photo without the warning.
    warnings = ([UNGRADABLE_LEGEND] + [f"- {reason}" for reason in photo.gradability.reasons]
                if not photo.gradable else [])
    return add_legend(image, entries, num_classes, title=name, warnings=warnings)


def overlay_name(name: str, taken: set) -> str:
    """A unique PNG file name for input ``name`` (subfolders joined with ``__``; only
    the file name of an absolute or parent-relative path)."""
    if os.path.isabs(name) or name.startswith(".."):
        name = os.path.basename(name)
    stem = os.path.splitext(name)[0].replace(os.sep, "__").replace("/", "__") or "image"
    candidate, n = f"{stem}.png", 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}.png"
    taken.add(candidate)
    return candidate


# ---------------------------------------------------------------------- the whole run

def _batches(items: Sequence[Tuple[str, str]], size: int) -> Iterator[Sequence[Tuple[str, str]]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_folder(predictor: Predictor, inputs: Sequence[Tuple[str, str]], output_dir: str,
                   options: PredictOptions) -> Dict[str, object]:
    """Predict every ``(path, name)`` of ``inputs`` (see ``list_inputs``); write
    ``output_dir/predictions.csv`` and ``output_dir/overlays/*.png``.

    The CSV is written to a ``.partial`` file and renamed at the end, so a finished
    CSV is always complete. Returns a summary: counts (``predicted``, ``unreadable``,
    ``no_retina``, ``ungradable``), grade histogram, paths.
    """
    preprocessing = options.resolve(predictor.preprocessing)
    os.makedirs(os.path.join(output_dir, OVERLAY_DIR) if options.overlays else output_dir,
                exist_ok=True)
    csv_path = os.path.join(output_dir, CSV_NAME)
    partial = csv_path + ".partial"
    taken: set = set()
    summary: Dict[str, object] = {"images": len(inputs), "predicted": 0, "unreadable": 0,
                                  "no_retina": 0, "ungradable": 0, "grades": {},
                                  "csv": csv_path}
    bar = ProgressBar(len(inputs), desc="predict", unit="img")
    writer = None
    with open(partial, "w", newline="") as handle, \
            ThreadPoolExecutor(max(1, options.workers)) as pool:
        for batch in _batches(list(inputs), options.batch_size):
            photos = list(pool.map(
                lambda item: prepare_photo(item[0], predictor.input_size, preprocessing,
                                           options.overlay_size), batch))
            ok = [i for i, p in enumerate(photos) if not p.error]
            out = (predictor(np.stack([photos[i].model_input for i in ok]), options.flip_tta)
                   if ok else {})
            if writer is None:
                writer = csv.DictWriter(handle, csv_columns(predictor, list(out) or
                                                            _probe_outputs(predictor)),
                                        extrasaction="raise", restval="")
                writer.writeheader()
            position = {index: k for k, index in enumerate(ok)}
            drawing = []  # overlays are drawn and encoded on the pool (OpenCV frees the GIL)
            for index, ((_, name), photo) in enumerate(zip(batch, photos)):
                if photo.error:
                    writer.writerow({"image": name, "status": "unreadable", "reason": photo.error,
                                     "retina_found": ""})
                    summary["unreadable"] += 1
                    continue
                k = position[index]
                row = prediction_row(photo, name, out, k, predictor)
                if options.overlays:
                    row["overlay"] = os.path.join(OVERLAY_DIR, overlay_name(name, taken))
                    drawing.append(pool.submit(
                        lambda *a: write_png(a[0], overlay_image(*a[1:])),
                        os.path.join(output_dir, row["overlay"]), photo, name, row, out, k,
                        predictor))
                writer.writerow(row)
                summary["predicted"] += 1
                summary["no_retina"] += int(not photo.retina_found)
                summary["ungradable"] += int(not photo.gradable)
                if "grade" in row:
                    grades = summary["grades"]
                    grades[row["grade"]] = grades.get(row["grade"], 0) + 1
            for future in drawing:
                future.result()  # re-raises a failed write here
            bar.update(bar.count + len(batch))
    bar.close()
    os.replace(partial, csv_path)
    return summary


def _probe_outputs(predictor: Predictor) -> List[str]:
    """Output names when no photo of the first batch could be read: run a black image."""
    size = predictor.input_size
    return list(predictor(np.zeros((1, size, size, 3), np.float32)))

