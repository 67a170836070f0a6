"""DecoupledNet-Str, 25 strong annotations per class (Hong et al. 2015, Table 1; paper: 50.3 mIoU).

Both stages (classifier and segmenter) on the strong images only: no weak image-level
labels.
"""
from experiments.decouplednet_stages import decouplednet_stages


def get_stages(scale: str = "paper"):
    """The row's stages in order (``python -m experiments.run`` runs them)."""
    return decouplednet_stages(scale, strong_per_class=25, classifier_on_strong_only=True)
