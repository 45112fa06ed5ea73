"""Common-words extraction after RULER: a numbered word list where a few words repeat many times.

The ten common words (none inside another listed word, so substring matching is exact) each appear
`freq_common` times and every other word `freq_rare` times; both counts scale with the target length
(RULER's 30 and 3 from about 4K tokens up) so short prompts still hold a clear majority. Rare words
come from the built-in lists, then from generated pseudo-words.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks import words
from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.haystacks import Stream
from ctxsparse.tasks.length import Draft, count_tokens, fit_length, sample_rng, to_sample


@functools.lru_cache(maxsize=1)
def standalone_words() -> frozenset[str]:
    """Built-in content words that occur inside no other one (safe answers for substring matching)."""
    vocabulary = words.content_words()
    return frozenset(w for w in vocabulary if not any(w in other and w != other for other in vocabulary))


def frequencies(capacity_items: float, num_common: int) -> tuple[int, int]:
    """(times each common word appears, times each rare word appears) for a list of about that many items."""
    common = min(30, max(4, round(0.3 * capacity_items / num_common)))
    rare = 3 if common >= 12 else 1
    return common, rare


@dataclass
class CommonWords(SyntheticTask):
    """Name the words that appear most often in a long numbered list."""

    name: str = "cwe"
    description: str = "Common words: list the 10 words that appear most often in a long numbered word list."
    num_common: int = 10

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        rng = sample_rng(self.name, seed, length, index)
        vocabulary = list(words.content_words())
        rng.shuffle(vocabulary)
        common = [w for w in vocabulary if w in standalone_words()][: self.num_common]
        listed = [w for w in vocabulary if w not in common]
        taken = set(vocabulary)

        def rare_word(gen: Any, i: int) -> str:
            while i >= len(listed):
                word = words.unique_pseudo_words(gen, 1, taken)[0]
                if not any(c in word for c in common):
                    listed.append(word)
            return listed[i]

        rare = Stream(rare_word, sample_rng(self.name, seed, length, index, "rare"))
        intro = (
            "Below is a numbered list of words. Some words occur many times, the others only a few times. "
            "Remember which words occur most often."
        )
        question = f"Question: What are the {self.num_common} most common words in the list above?"
        prefix = f"Answer: The {self.num_common} most common words in the list are:"
        sample_items = " ".join(f"{k}. {w}" for k, w in enumerate(vocabulary[:50], start=100))
        per_item = count_tokens(tokenizer, sample_items) / 50
        fixed = count_tokens(tokenizer, intro + "\n\n" + question)
        freq_common, freq_rare = frequencies((length - fixed) / per_item, self.num_common)
        meta = {"freq_common": freq_common, "freq_rare": freq_rare}

        def render(n: int) -> Draft:
            items = common * freq_common + rare.take(n) * freq_rare
            sample_rng(self.name, seed, length, index, "order", n).shuffle(items)
            body = " ".join(f"{k}. {w}" for k, w in enumerate(items, start=1))
            return Draft(intro + "\n" + body, question, tuple(common), meta)

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        return to_sample(
            draft,
            tokens,
            task=self.name,
            index=index,
            metric="string_match_all",
            answer_prefix=prefix,
            max_new_tokens=120,
            seed=seed,
        )


CWE_TASKS: list[CommonWords] = [CommonWords()]
