"""DecoupledNet ("Decoupled Deep Neural Network for Semi-supervised Semantic
Segmentation", Hong, Noh & Han 2015, arXiv:1506.04924) and its DeconvNet baseline.
"""
