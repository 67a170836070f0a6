"""DIARETDB1 and HEI-MED through the training and conversion paths: both sets train in
one run (HEI-MED partial), validation reads DIARETDB1's test list, and the converter
takes the fusion rule as a reader argument."""
from __future__ import annotations

import io

import numpy as np

from coopseg.config import partial_label
from coopseg.training.examples import mask_examples
from data_pipelines import conversion, tfrecords
from data_pipelines.idrid import idrid_class_names
from experiments.scales import experiment
from tests.test_readers_diaretdb1 import CIRCLE, SQUARE, diaretdb1, four_experts
from tests.test_readers_heimed import blob_ids, write_photo

CLASSES = idrid_class_names()
HARD = CLASSES.index("hard_exudate")


def _public_sets(tmp_path):
    agreed = four_experts(*[[("Hard_exudates", "High", SQUARE),
                             ("Haemorrhages", "High", CIRCLE)]] * 3, [])
    two_of_four = four_experts(*[[("Hard_exudates", "High", SQUARE)]] * 2, [], [])
    diaretdb1(tmp_path / "ddb1", {1: agreed, 2: agreed, 3: two_of_four}, train=[1, 2],
              test=[3])
    write_photo(str(tmp_path / "heimed" / "DMED"), "p1", blob_ids(), "1 exudate\n2 other\n")
    return str(tmp_path / "ddb1"), str(tmp_path / "heimed")


def test_diaretdb1_and_heimed_train_together(tmp_path):
    from coopseg.training.train import train
    ddb1, heimed = _public_sets(tmp_path)
    cfg = experiment("tiny", train={"mode": "seg_only", "steps": 8},
                     run={"model_dir": str(tmp_path / "run"), "eval_every": 8,
                          "checkpoint_every": 8})
    cfg.model.num_seg_classes = len(CLASSES)
    cfg.data.class_names = CLASSES
    cfg.data.mask_priority = CLASSES[1:]
    cfg.data.masks_train = f"diaretdb1:{ddb1},heimed:{heimed}"
    cfg.data.masks_val = f"diaretdb1:{ddb1}"
    examples = mask_examples(cfg, "train")
    assert [e.is_partial for e in examples] == [False, False, True]
    assert [e.image_id for e in mask_examples(cfg, "val")] == ["diaretdb1_image003"]
    out = train(cfg.validate(), export=False)
    assert np.isfinite(out["metrics"]["segmentation"]["miou"])
    assert out["metrics"]["segmentation"]["resolution"]


def test_converter_fuses_by_the_given_rule(tmp_path):
    ddb1, heimed = _public_sets(tmp_path)

    def converted_masks(fmt, source, out, **kw):
        options = conversion.ConvertOptions(format=fmt, input=source, output=str(out), size=40,
                                            workers=1, crop_retina=False, **kw)
        conversion.convert_split(options, progress_stream=io.StringIO())
        dataset = tfrecords.mask_source_from_tfrecords(str(out), "train", class_names=CLASSES)
        return [mask.numpy() for _, mask in dataset]

    strict, = converted_masks("diaretdb1", ddb1, tmp_path / "a", split="train",
                              source_split="test")
    loose, = converted_masks("diaretdb1", ddb1, tmp_path / "b", split="train",
                             source_split="test", reader_args=(("threshold", "0.5"),))
    assert not (strict == HARD).any() and (loose == HARD).sum() > 50  # 2 of 4 experts
    heimed_mask, = converted_masks("heimed", heimed, tmp_path / "c")
    assert (heimed_mask == HARD).any()
    assert (heimed_mask == partial_label((0, 0, 1, 0))).any()
    assert (heimed_mask != 0).all()  # nothing in a HEI-MED photo is sure background
