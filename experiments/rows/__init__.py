"""One module per experiment: each paper row, ablation and pre-training stage.

A module defines ``get_config(scale)`` (one training run) and/or ``get_stages(scale)``
(several runs in order, e.g. a two-step row); ``experiments.registry`` finds them by name.
"""
