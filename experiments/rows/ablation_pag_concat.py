"""PAG ablation: JointSeg with the partial attention gate in ``concat`` mode (default: gated,
the ``jointseg`` row). The paper claims the PAG raises mIoU and speeds convergence.

    python -m experiments.run --suite=ablation_pag --rows=ablation_pag_concat --scale=small
    coopseg-train --experiment=ablation_pag_concat --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, model={"pag_mode": "concat"})
