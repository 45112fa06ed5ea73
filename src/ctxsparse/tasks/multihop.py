"""Multi-hop reasoning over synthetic chained facts, among distractor chains of the same form.

Every chain has four facts: an object's keeper, the keeper's birthplace, the town's river and the sea
the river flows into. The question follows the first `hops` links (2-4) of one chain and asks for the
last entity; all names are made up and unique within a sample, so nothing can be guessed. Registered:
multihop (hops cycle 2, 3, 4 over the samples) and multihop_2 / multihop_3 / multihop_4.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ctxsparse.tasks import words
from ctxsparse.tasks.base import Sample, SyntheticTask
from ctxsparse.tasks.haystacks import Stream
from ctxsparse.tasks.length import Draft, fit_length, sample_rng, to_sample

QUESTIONS = {
    2: "In which town was the keeper of the {obj} born?",
    3: "On which river lies the town where the keeper of the {obj} was born?",
    4: "Into which sea flows the river of the town where the keeper of the {obj} was born?",
}


class _Names:
    """Unique objects ('red lantern') and capitalised made-up names for one sample."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.taken: set[str] = set()
        self.objects: set[str] = set()

    def name(self) -> str:
        """Three syllables each, so no name is a prefix of another."""
        while True:
            candidate = words.pseudo_word(self.rng, 3)
            if candidate not in self.taken:
                self.taken.add(candidate)
                return candidate.capitalize()

    def obj(self) -> str:
        while True:
            adjective = self.rng.choice(words.COLORS + words.ADJECTIVES)
            candidate = f"{adjective} {self.rng.choice(words.NOUNS)}"
            if candidate not in self.objects:
                self.objects.add(candidate)
                return candidate

    def chain(self) -> tuple[str, list[str], list[str]]:
        """(object, entities at hops 1..4, the four facts)."""
        obj = self.obj()
        keeper, town, river, sea = (self.name() for _ in range(4))
        facts = [
            f"The keeper of the {obj} is {keeper}.",
            f"{keeper} was born in {town}.",
            f"{town} lies on the river {river}.",
            f"The river {river} flows into the {sea} Sea.",
        ]
        return obj, [keeper, town, river, sea], facts


@dataclass
class MultiHop(SyntheticTask):
    """Follow a chain of facts hop by hop to the final entity."""

    name: str = "multihop"
    description: str = "Multi-hop: follow 2-4 chained facts (keeper, birthplace, river, sea) among distractors."
    hops: int = 0

    def make_sample(self, tokenizer: Any, length: int, index: int, seed: int) -> Sample:
        hops = self.hops or 2 + index % 3
        if hops not in QUESTIONS:
            raise ValueError(f"multihop supports 2 to 4 hops, got {hops}.")
        rng = sample_rng(self.name, seed, length, index)
        names = _Names(rng)
        obj, entities, target_facts = names.chain()
        pending: list[str] = []

        def distractor_fact(_gen: random.Random, _i: int) -> str:
            if not pending:
                pending.extend(reversed(names.chain()[2]))
            return pending.pop()

        stream = Stream(distractor_fact, rng)
        intro = (
            "The following facts tell who keeps which object, where people were born, which river each "
            "town lies on and which sea each river flows into. Read them carefully; a question follows."
        )
        question = QUESTIONS[hops].format(obj=obj) + " Answer with the name only."
        meta = {"hops": hops, "object": obj, "chain": tuple(entities[:hops])}

        def render(n: int) -> Draft:
            facts = stream.take(n) + target_facts
            order_rng = sample_rng(self.name, seed, length, index, "order", n)
            order_rng.shuffle(facts)
            depths = tuple(round(facts.index(f) / max(1, len(facts) - 1), 3) for f in target_facts[:hops])
            return Draft(intro + "\n" + " ".join(facts), question, (entities[hops - 1],), {**meta, "depths": depths})

        draft, tokens = fit_length(render, tokenizer, length, self.name)
        return to_sample(
            draft,
            tokens,
            task=self.name,
            index=index,
            metric="string_match_all",
            answer_prefix="Answer:",
            max_new_tokens=32,
            seed=seed,
        )


MULTIHOP_TASKS: list[MultiHop] = [
    MultiHop(),
    *(
        MultiHop(
            name=f"multihop_{h}",
            description=f"Multi-hop: follow {h} chained facts to the final entity among distractor chains.",
            hops=h,
        )
        for h in (2, 3, 4)
    ),
]
