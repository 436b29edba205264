"""Shared statistics: permutation tests, bootstrap intervals, multiple-testing corrections."""
