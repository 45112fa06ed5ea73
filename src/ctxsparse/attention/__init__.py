"""Attention backends over a Selection: the torch reference (ground truth) and fast GPU kernels."""

from ctxsparse.attention.reference import dense_attention_reference, sparse_attention_reference

__all__ = ["dense_attention_reference", "sparse_attention_reference"]
