"""The paper's Theorem 1 as code: dense attention over N > d + 1 tokens cannot be injective."""

from ctxsparse.theory.construction import (
    Collision,
    Verification,
    as_value_matrix,
    augmented_rank,
    collision,
    format_collision,
    null_space_dimension,
    verify,
)
from ctxsparse.theory.value_caches import (
    HeadRecord,
    default_prose,
    format_model_table,
    measure_model,
    model_summary,
)

__all__ = [
    "Collision",
    "HeadRecord",
    "Verification",
    "as_value_matrix",
    "augmented_rank",
    "collision",
    "default_prose",
    "format_collision",
    "format_model_table",
    "measure_model",
    "model_summary",
    "null_space_dimension",
    "verify",
]
