"""Before a study decodes anything: every Double Sparsity method must find its model's channel calibration.

A missing one stops the study with the command that makes it; with calibrate=True it is made here (on the
built-in prose, 2048 tokens or the model's limit) and cached where `ctxsparse calibrate` would put it.
"""

from __future__ import annotations

from typing import Any

from ctxsparse.study.plan import StudyPlan

DOUBLE_SPARSITY = "double_sparsity"
CALIBRATION_TOKENS = 2048


def needs_default_calibration(plan: StudyPlan) -> bool:
    """True when some method is (or composes) double_sparsity without an explicit calibration= file."""
    for method in plan.methods:
        for part in method.spec.split("+"):
            name, _, params = part.partition(":")
            if name == DOUBLE_SPARSITY and "calibration=" not in params:
                return True
    return False


def ensure_calibrated(plan: StudyPlan, model_name: str, session: Any, calibrate: bool = False) -> str | None:
    """Check (or, with calibrate, make) the calibration of a loaded model; returns its path, or None if unneeded."""
    model = getattr(session, "model", None)
    if model is None or not needs_default_calibration(plan):
        return None
    from ctxsparse.models import model_key
    from ctxsparse.selectors.calibration import calibrate_model, calibration_path, load_calibration

    key = model_key(model)
    path = calibration_path(key)
    if path.is_file():
        load_calibration(key, path).check(
            key,
            int(model.config.num_hidden_layers),
            int(getattr(model.config, "num_key_value_heads", None) or model.config.num_attention_heads),
            int(
                getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
            ),
        )
        return str(path)
    if not calibrate:
        raise FileNotFoundError(
            f"double_sparsity needs a channel calibration of {model_name} ({path} does not exist); add --calibrate "
            f"to make it now (cached), or run `ctxsparse calibrate --model {model_name}` first."
        )
    from ctxsparse.prose import builtin_text

    limit = min(CALIBRATION_TOKENS, int(getattr(model.config, "max_position_embeddings", 0) or CALIBRATION_TOKENS))
    words = limit
    ids = session.tokenizer(builtin_text(words), return_tensors="pt").input_ids
    while ids.shape[1] < limit:
        words *= 2
        ids = session.tokenizer(builtin_text(words), return_tensors="pt").input_ids
    calibration = calibrate_model(model, ids[:, :limit].to(model.device), model_key=key, source="builtin")
    return str(calibration.save(path))
