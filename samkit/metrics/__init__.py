"""Evaluation metrics: VOS J&F (``samkit.metrics.vos``, ``samkit.metrics.boundary``).

Submodules are imported on demand so ``import samkit`` stays light.
"""
