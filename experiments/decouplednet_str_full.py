"""DecoupledNet-Str, every strong annotation: a row of Hong et al. 2015, Table 1.

Paper: 67.5 mIoU on PASCAL VOC 2012 val.

The same stages as decouplednet_full (with every image strong, "strong only" is
all of them), so it shares that row's runs.

    python -m experiments.decouplednet_suite --scale=small --rows=decouplednet_str_full
"""
from experiments.decouplednet_suite import row_config, row_stages

ROW = "decouplednet_str_full"


def get_config(scale: str = "paper"):
    """The row's final stage; see ``decouplednet_suite.row_config``."""
    return row_config(ROW, scale)


def get_stages(scale: str = "paper"):
    """Every stage of the row, in order (``experiments.run`` runs them)."""
    return row_stages(ROW, scale)
