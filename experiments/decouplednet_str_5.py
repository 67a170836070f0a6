"""DecoupledNet-Str, 5 strong annotations per class: a row of Hong et al. 2015, Table 1.

Paper: 32.7 mIoU on PASCAL VOC 2012 val.

Both stages (classifier and segmenter) on the 5-per-class strong images only:
no weak image-level labels.

    python -m experiments.decouplednet_suite --scale=small --rows=decouplednet_str_5
"""
from experiments.decouplednet_suite import row_config, row_stages

ROW = "decouplednet_str_5"


def get_config(scale: str = "paper"):
    """The row's final stage; see ``decouplednet_suite.row_config``."""
    return row_config(ROW, scale)


def get_stages(scale: str = "paper"):
    """Every stage of the row, in order (``experiments.run`` runs them)."""
    return row_stages(ROW, scale)
