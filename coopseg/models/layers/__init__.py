"""Layers every model family uses: BatchNorm, the ImageNet input adapter, float32 outputs."""
