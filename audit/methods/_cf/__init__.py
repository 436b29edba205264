"""Internals of the counterfactual method (search space, searches, quality, recourse statistics).

Private: the public surface is :mod:`audit.methods.counterfactuals`.
"""
