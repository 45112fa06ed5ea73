"""Frequent-words extraction after RULER: a text of coded words drawn from a Zipf law; name the top three.

Word of rank r appears with probability proportional to 1 / r**2 over a vocabulary of about one word
per 50 target tokens. Ties at the third place are broken by rewriting the last tied occurrences as the
most frequent word, so the answer is always unambiguous.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks import words
from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.haystacks import Stream
from ctxsparse.tasks.length import Draft, fit_length, sample_rng, to_sample

TOP = 3


def untie_top(text: list[str], top: int = TOP) -> list[str]:
    """Copy of `text` where the `top` most frequent words are strictly more frequent than all others."""
    out = list(text)
    while True:
        ranked = Counter(out).most_common()
        if len(ranked) <= top or ranked[top - 1][1] > ranked[top][1]:
            return out
        tied = {word for word, n in ranked[top - 1 :] if n == ranked[top - 1][1]}
        last = max(i for i, word in enumerate(out) if word in tied and word != ranked[0][0])
        out[last] = ranked[0][0]


@dataclass
class FrequentWords(SyntheticTask):
    """Name the three most frequent words of a coded text."""

    name: str = "fwe"
    description: str = "Frequent words: find the 3 most frequent coded words in a Zipf-distributed text."
    alpha: float = 2.0

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        rng = sample_rng(self.name, seed, length, index)
        vocabulary = words.unique_pseudo_words(rng, max(30, length // 50))
        weights = [1.0 / (rank**self.alpha) for rank in range(1, len(vocabulary) + 1)]
        stream = Stream(
            lambda gen, _i: gen.choices(vocabulary, weights)[0],
            sample_rng(self.name, seed, length, index, "text"),
        )
        intro = (
            "Read the following coded text and keep count of how often each coded word appears. "
            "A question about the most frequent coded words follows."
        )
        question = f"Question: Which {TOP} coded words appear most often in the coded text above?"
        prefix = f"Answer: The {TOP} most frequent coded words in the text are:"

        def render(n: int) -> Draft:
            text = untie_top(stream.take(n))
            answers = tuple(word for word, _ in Counter(text).most_common(TOP))
            return Draft(intro + "\n" + " ".join(text), question, answers, {"vocabulary": len(vocabulary)})

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        return to_sample(
            draft,
            tokens,
            task=self.name,
            index=index,
            metric="string_match_all",
            answer_prefix=prefix,
            max_new_tokens=50,
            seed=seed,
        )


FWE_TASKS: list[FrequentWords] = [FrequentWords()]
