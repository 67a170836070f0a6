"""DeconvNet baseline on every strong annotation (Hong et al. 2015, Table 1: 67.1 mIoU on VOC 2012 val).

One stage: the encoder-decoder alone, per-pixel softmax over all classes, on the
pixel masks of every training image.

    python -m experiments.decouplednet_suite --rows=decouplednet_deconvnet_full --scale=small
"""
from experiments.decouplednet_suite import row_config, row_stages

ROW = "decouplednet_deconvnet_full"


def get_config(scale: str = "paper"):
    """The row's final stage; see ``decouplednet_suite.row_config``."""
    return row_config(ROW, scale)


def get_stages(scale: str, run_root: str):
    """Every stage of the row, in order, with run directories under ``run_root``."""
    return row_stages(ROW, scale, run_root)
