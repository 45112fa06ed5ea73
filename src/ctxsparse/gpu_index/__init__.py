"""GPU indexers for decode-time sparsity: Double Sparsity label scores, Quest page bounds, an exact top-k,
and the whole index -> top-k -> sparse_decode step as one CUDA-graph-friendly call (Triton kernels)."""

from ctxsparse.gpu_index.label_score import label_cache_from_keys, label_scores
from ctxsparse.gpu_index.page_score import page_bounds_from_keys, page_scores
from ctxsparse.gpu_index.pipeline import DoubleSparsityDecode, QuestDecode
from ctxsparse.gpu_index.topk import RowTopK, topk_indices

__all__ = [
    "DoubleSparsityDecode",
    "QuestDecode",
    "RowTopK",
    "label_cache_from_keys",
    "label_scores",
    "page_bounds_from_keys",
    "page_scores",
    "topk_indices",
]
