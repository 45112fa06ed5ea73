"""The generation engine: a static paged KV cache, dense prefill, and decode steps captured in CUDA graphs."""

from ctxsparse.engine.cache import CacheShape, PagedKVCache
from ctxsparse.engine.engine import Engine
from ctxsparse.engine.result import EngineResult
from ctxsparse.engine.sampling import Sampling

__all__ = ["CacheShape", "Engine", "EngineResult", "PagedKVCache", "Sampling"]
