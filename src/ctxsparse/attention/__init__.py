"""Attention backends over a Selection: the torch reference (ground truth) and fast GPU kernels."""

from ctxsparse.attention.reference import dense_attention_reference, sparse_attention_reference
from ctxsparse.attention.sparse_decode import sparse_decode

__all__ = ["dense_attention_reference", "sparse_attention_reference", "sparse_decode"]
