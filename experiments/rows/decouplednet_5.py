"""DecoupledNet, 5 strong annotations per class (Hong et al. 2015, Table 1; paper: 53.1 mIoU).

Stage 1: the classifier on the image-level labels of every training image; stage 2:
bridging + segmentation on 5 pixel-annotated images per class.
"""
from experiments.decouplednet_stages import decouplednet_stages


def get_stages(scale: str = "paper"):
    """The row's stages in order (``python -m experiments.run`` runs them)."""
    return decouplednet_stages(scale, strong_per_class=5)
