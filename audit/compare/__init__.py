"""Champion vs challenger: a paired statistical comparison of two models on the same rows
(``audit compare``, :func:`compare_models`). See :mod:`audit.compare.run`."""

from audit.compare.run import ComparisonResult, compare_models, load_pair, run_comparison

__all__ = ["ComparisonResult", "compare_models", "load_pair", "run_comparison"]
