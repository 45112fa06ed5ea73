"""A RULER-style single-needle passkey prompt of a given token length: the smoke test of sparse decoding."""

from __future__ import annotations

from dataclasses import dataclass

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
INTRO = (
    "A special magic number is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the number afterwards.\n"
)


@dataclass(frozen=True)
class PasskeyPrompt:
    """Context (prefilled densely), question and answer prefix (decoded sparsely), and the answer."""

    context: str
    question: str
    answer_prefix: str
    answer: str


def passkey_prompt(tokenizer, length: int = 2048, key: str = "68041", depth: float = 0.5) -> PasskeyPrompt:
    """A noise haystack of about `length` tokens of `tokenizer` with one magic number at relative `depth`."""
    if not 0 <= depth <= 1:
        raise ValueError(f"depth must lie in [0, 1]; got {depth}.")
    per_sentence = max(1, len(tokenizer(NOISE, add_special_tokens=False)["input_ids"]))
    needle = f"One of the special magic numbers for apple is: {key}. "
    budget = length - len(tokenizer(INTRO + needle, add_special_tokens=False)["input_ids"])
    repeats = max(1, budget // per_sentence)
    at = round(repeats * depth)
    context = INTRO + NOISE * at + needle + NOISE * (repeats - at)
    return PasskeyPrompt(
        context=context,
        question="What is the special magic number for apple mentioned in the provided text?",
        answer_prefix="The special magic number for apple mentioned in the provided text is",
        answer=key,
    )
