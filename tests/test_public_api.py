"""The curated public surface: sorted, importable, and light to import."""

from __future__ import annotations

import subprocess
import sys

import audit


def test_all_is_sorted_unique_and_importable():
    assert list(audit.__all__) == sorted(set(audit.__all__))
    for name in audit.__all__:
        assert getattr(audit, name) is not None


def test_import_audit_does_not_load_heavy_libraries():
    code = ("import sys, audit; heavy = ['torch', 'shap', 'captum', 'lime', 'weasyprint', "
            "'matplotlib.pyplot', 'fairlearn', 'sklearn']; "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
