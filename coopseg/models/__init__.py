"""Keras functional builders: JointSeg (encoder, partial attention gate, heads), the baselines and DecoupledNet."""
