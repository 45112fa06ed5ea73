"""How a sample becomes the model's text, split where dense prefill ends and sparse decoding begins."""

from __future__ import annotations

from typing import Any

from ctxsparse.tasks.base import Sample


def render_prompt(sample: Sample, tokenizer: Any) -> tuple[str, str]:
    """(dense part, sparse part): their concatenation is the full prompt, answer prefix included.

    Chat samples are wrapped as one user turn with the tokenizer's chat template (plain text plus a
    newline when it has none) and the assistant turn is opened; the dense part ends with the context.
    Tokenize both without special tokens; templates that want a BOS token write it themselves.
    """
    if not sample.chat:
        return sample.context, sample.question + sample.answer_prefix
    user = sample.prompt_text()
    if getattr(tokenizer, "chat_template", None):
        full = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        start = full.find(sample.context)
        if start < 0:
            raise ValueError(f"The chat template of this tokenizer altered the context of {sample.task!r}.")
    else:
        full, start = user + "\n", 0
    cut = start + len(sample.context)
    return full[:cut], full[cut:] + sample.answer_prefix
