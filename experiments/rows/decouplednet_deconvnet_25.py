"""DeconvNet, 25 strong annotations per class (Hong et al. 2015, Table 1; paper: 38.6 mIoU).

One stage: the encoder-decoder alone, per-pixel softmax over all classes.
"""
from experiments.decouplednet_stages import deconvnet_stages


def get_stages(scale: str = "paper"):
    """The row's stages in order (``python -m experiments.run`` runs them)."""
    return deconvnet_stages(scale, strong_per_class=25)
