"""The JointSeg paper's baselines: FCN-8s, Inception-UNet, and the VGG-16, VGG-19
and InceptionV3 classifiers.
"""
