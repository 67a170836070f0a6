"""DecoupledNet-Str, every strong annotation (Hong et al. 2015, Table 1: 67.5 mIoU on VOC 2012 val).

The same stages as decouplednet_full (with every image strong, "strong only" is
all of them), so it shares that row's runs.

    python -m experiments.decouplednet_suite --rows=decouplednet_str_full --scale=small
"""
from experiments.decouplednet_suite import row_config, row_stages

ROW = "decouplednet_str_full"


def get_config(scale: str = "paper"):
    """The row's final stage; see ``decouplednet_suite.row_config``."""
    return row_config(ROW, scale)


def get_stages(scale: str, run_root: str):
    """Every stage of the row, in order, with run directories under ``run_root``."""
    return row_stages(ROW, scale, run_root)
