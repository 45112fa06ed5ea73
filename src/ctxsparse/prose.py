"""Built-in, deterministic English prose generated from word lists: calibration and theory texts, offline."""

from __future__ import annotations

import random

NAMES = (
    "Ada", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Imani", "Jonas",
    "Keiko", "Luis", "Mara", "Nikolai", "Olu", "Priya", "Quentin", "Rosa", "Samir", "Tessa",
)  # fmt: skip
PLACES = (
    "the harbor", "the old library", "a mountain village", "the night market", "the research station",
    "a quiet orchard", "the railway depot", "the river delta", "a crowded classroom", "the observatory",
    "the bakery on the corner", "a desert outpost", "the city archive", "the greenhouse", "a fishing boat",
)  # fmt: skip
NOUNS = (
    "letter", "map", "engine", "garden", "question", "recipe", "storm", "bridge", "ballad", "ledger",
    "lantern", "experiment", "promise", "window", "harvest", "signal", "journey", "puzzle", "painting",
    "contract", "forest", "machine", "rumor", "telescope", "notebook", "festival", "river", "clock",
)  # fmt: skip
ADJECTIVES = (
    "quiet", "bright", "ancient", "careful", "sudden", "narrow", "generous", "stubborn", "fragile",
    "curious", "heavy", "patient", "distant", "golden", "strange", "simple", "restless", "familiar",
)  # fmt: skip
VERBS = (
    "repaired", "studied", "painted", "carried", "measured", "forgot", "discovered", "described",
    "borrowed", "explained", "followed", "opened", "counted", "questioned", "remembered", "built",
)  # fmt: skip
ADVERBS = (
    "slowly", "suddenly", "carefully", "quietly", "eagerly", "reluctantly", "gently", "finally",
    "almost", "rarely", "patiently", "happily",
)  # fmt: skip
CONNECTIVES = (
    "Later that week,", "Meanwhile,", "By the evening,", "Years afterwards,", "Without a word,",
    "In the morning,", "Despite the rain,", "As it turned out,", "For a while,", "Soon enough,",
)  # fmt: skip
TEMPLATES = (
    "{name} {verb} the {adj} {noun} near {place}.",
    "{conn} {name} {adv} {verb} a {noun} that nobody had noticed.",
    "The {noun} at {place} was {adj}, and {name} {verb} it {adv}.",
    "Why had {name} {verb} the {noun} before the {adj} {noun2} arrived?",
    "{conn} the {adj} {noun} {adv} changed how {place} looked at dawn.",
    "{name} told {name2} that the {noun} was more {adj} than the {noun2}.",
    "There were {count} {noun}s in {place}, each one {adj} in its own way.",
    "\"Bring the {noun},\" said {name}, \"and we will see whether it is {adj}.\"",
    "{name} and {name2} {verb} the {noun2} {adv}, counting {count} steps along the way.",
    "{conn} nobody at {place} {verb} the {adj} {noun} again.",
)  # fmt: skip


def builtin_text(num_words: int = 2048, seed: int = 0) -> str:
    """About num_words words of varied English prose in paragraphs; the same text for the same arguments."""
    rng = random.Random(seed)
    sentences: list[str] = []
    words = 0
    while words < num_words:
        sentence = rng.choice(TEMPLATES).format(
            name=rng.choice(NAMES),
            name2=rng.choice(NAMES),
            place=rng.choice(PLACES),
            noun=rng.choice(NOUNS),
            noun2=rng.choice(NOUNS),
            adj=rng.choice(ADJECTIVES),
            verb=rng.choice(VERBS),
            adv=rng.choice(ADVERBS),
            conn=rng.choice(CONNECTIVES),
            count=rng.randint(2, 99),
        )
        sentences.append(sentence)
        words += len(sentence.split())
    paragraphs, start = [], 0
    while start < len(sentences):
        size = rng.randint(3, 7)
        paragraphs.append(" ".join(sentences[start : start + size]))
        start += size
    return "\n\n".join(paragraphs) + "\n"
