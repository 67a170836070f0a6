"""DecoupledNet, every strong annotation (Hong et al. 2015, Table 1; paper: 67.5 mIoU).

Stage 1: the classifier on the image-level labels of every training image; stage 2:
bridging + segmentation on every pixel-annotated image.
"""
from experiments.decouplednet_stages import decouplednet_stages


def get_stages(scale: str = "paper"):
    """The row's stages in order (``python -m experiments.run`` runs them)."""
    return decouplednet_stages(scale, strong_per_class=0)
