"""JointSeg ("Rethinking Convolutional Semantic Segmentation Learning", Haloi 2017,
arXiv:1710.07991): shared encoder, classifier agent, segmentation agent with
partial attention gating.
"""
