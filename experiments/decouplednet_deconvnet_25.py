"""DeconvNet baseline, 25 strong annotations per class: a row of Hong et al. 2015, Table 1.

Paper: 38.6 mIoU on PASCAL VOC 2012 val.

One stage: the encoder-decoder alone, per-pixel softmax over all classes, on
25 pixel-annotated images per class.

    python -m experiments.decouplednet_suite --scale=small --rows=decouplednet_deconvnet_25
"""
from experiments.decouplednet_suite import row_config, row_stages

ROW = "decouplednet_deconvnet_25"


def get_config(scale: str = "paper"):
    """The row's final stage; see ``decouplednet_suite.row_config``."""
    return row_config(ROW, scale)


def get_stages(scale: str = "paper"):
    """Every stage of the row, in order (``experiments.run`` runs them)."""
    return row_stages(ROW, scale)
