"""`import ctxsparse` stays light; the top-level names load on first use; a missing module says so."""

import subprocess
import sys

import pytest

import ctxsparse

LIGHT = """
import sys, ctxsparse
heavy = sorted(m for m in ("torch", "transformers", "numpy", "matplotlib") if m in sys.modules)
assert not heavy, heavy
print(ctxsparse.__version__)
"""


def test_import_is_light():
    out = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ctxsparse.__version__


def test_top_level_names_resolve_lazily():
    from ctxsparse.generation import decode, generate, prefill
    from ctxsparse.hf import sparse_decoding
    from ctxsparse.models import load_model

    assert ctxsparse.load_model is load_model and ctxsparse.generate is generate
    assert ctxsparse.prefill is prefill and ctxsparse.decode is decode
    assert ctxsparse.sparse_decoding is sparse_decoding
    assert ctxsparse.Budget(sparsity=10).sparsity == 10
    assert {"Engine", "load_model", "sparse_decoding"} <= set(dir(ctxsparse)) and "Engine" in ctxsparse.__all__
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        ctxsparse.nonesuch  # noqa: B018


def test_engine_resolves_or_says_what_is_missing(monkeypatch):
    import importlib

    try:
        importlib.import_module("ctxsparse.engine")
    except ModuleNotFoundError:
        with pytest.raises(ImportError, match=r"ctxsparse.Engine lives in ctxsparse.engine"):
            ctxsparse.Engine  # noqa: B018
    else:
        from ctxsparse.engine import Engine

        assert ctxsparse.Engine is Engine
