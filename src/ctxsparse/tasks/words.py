"""Built-in word lists, so that task generation and the local tokenizer need no network or extra package."""

from __future__ import annotations

import random

NOUNS: tuple[str, ...] = tuple(
    """
    apple anchor arrow autumn badge bakery balcony banner barn basket beacon bell bench bicycle blanket
    boat bottle bridge brook bucket cabin cable camera candle canyon carpet castle cellar chair chimney
    circle cliff clock cloud coast compass cottage council county crater crown curtain desert diamond
    dinner doctor door dragon drawer drum eagle engine envelope falcon farmer feather fence field forest
    fountain garden gate glacier glove harbor harvest hammer helmet highway hill horizon horse island
    jacket journey kettle kitchen ladder lake lantern lecture letter library lighthouse lizard market
    meadow merchant mirror mountain museum needle notebook ocean office orchard painter palace parcel
    pencil pepper piano pillow pilot planet pocket pond potato puzzle quarry rabbit railway ribbon river
    rocket saddle sailor scholar season shadow shelter shoulder signal singer skyline soldier spider
    station statue storm stream street student summer sunrise table teacher temple theater thunder
    ticket tiger tower tractor trumpet tunnel umbrella valley village violin volcano wagon wallet
    window winter wizard workshop author bishop blossom canvas captain carriage cathedral chapter
    chorus cipher comet coral cradle crystal dancer dolphin empire fabric festival fisher gallery
    garland goblet granite guitar hedge heron journal jungle kingdom knight lagoon leopard locket
    marble mason meteor miner monk novel oasis otter oyster parrot pasture pebble pirate plateau
    portrait prairie prism quill raven reef riddle saffron scarf sculptor shepherd sparrow spice
    spring squirrel tapestry terrace thistle timber torch trader tulip turtle vessel vineyard voyage
    walnut weaver whistle willow zebra
    """.split()
)

ADJECTIVES: tuple[str, ...] = tuple(
    """
    ancient bright calm careful cheerful clever cold crisp curious dark distant eager early elegant
    empty famous fancy fierce gentle giant golden graceful happy heavy hidden honest humble icy jolly
    kind large lazy little lively lonely loud lucky mellow mighty modern narrow noble odd old patient
    plain polite proud quiet quick rapid rare rough round royal rustic sandy secret sharp shiny silent
    simple sleepy slow small smooth soft solid sturdy sudden sunny swift tall tame tender tidy tiny
    tough vast warm wealthy wild windy wise wooden young brave busy dusty frosty hollow misty nimble
    scarlet silver velvet woolen amber bitter breezy cosmic dainty fragrant frozen gloomy humid
    jagged keen lofty merry muddy neat oval pale rusty salty serene shallow snowy spotted stormy
    striped sweet thorny vivid witty
    """.split()
)

VERBS_PAST: tuple[str, ...] = tuple(
    """
    admired borrowed built carried chased cleaned collected covered crossed designed discovered
    drew explored fixed followed found gathered guarded helped imagined inspected joined lifted
    measured mended moved noticed opened painted planted polished praised pulled pushed raised
    reached repaired rescued sketched sold studied visited watched welcomed wrapped described
    answered arranged counted delivered entered finished greeted hid invited kept lit marked
    ordered packed passed placed prepared protected rebuilt remembered returned shared signed
    sorted steered tested traded trimmed weighed
    """.split()
)

ADVERBS: tuple[str, ...] = tuple(
    """
    quickly slowly quietly gently boldly carefully calmly eagerly gladly happily kindly loudly
    neatly patiently politely proudly rarely softly swiftly warmly wisely often soon later again
    """.split()
)

PREPOSITIONS: tuple[str, ...] = tuple("near behind beside under above across beyond around along past".split())

COLORS: tuple[str, ...] = tuple(
    "red blue green yellow purple orange white black grey brown pink violet crimson teal indigo".split()
)

FIRST_NAMES: tuple[str, ...] = tuple(
    """
    Ada Alma Ben Cara Dana Eli Ezra Finn Gia Hana Ivo Jana Kai Lena Leo Mara Milo Nia Noah Omar Pia
    Rosa Sami Tara Uma Vera Wren Yara Zoe Theo Iris Nora Hugo Ines Otto Lila Anya Bram Cleo Dario
    """.split()
)

FILLER_SENTENCES: tuple[str, ...] = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)

_SENTENCE_PATTERNS: tuple[str, ...] = (
    "The {adj} {noun} {verb} the {noun2} {prep} the {noun3}.",
    "A {adj} {noun} {adv} {verb} a {adj2} {noun2}.",
    "Every {noun} near the {noun2} was {adj} and {adj2}.",
    "In the {adj} {noun}, the {noun2} {verb} the {adj2} {noun3}.",
    "The {noun} {verb} the {noun2}, and the {noun3} {adv} {verb2} it.",
    "Nobody {verb} the {adj} {noun} {prep} the {noun2} that {noun3}.",
    "Once a {adj} {noun} {verb} a {noun2} {prep} an old {noun3}.",
)

_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"


def sentence(rng: random.Random) -> str:
    """One grammatical, meaningless English sentence drawn from the built-in lists."""
    pattern = rng.choice(_SENTENCE_PATTERNS)
    return pattern.format(
        adj=rng.choice(ADJECTIVES),
        adj2=rng.choice(ADJECTIVES),
        noun=rng.choice(NOUNS),
        noun2=rng.choice(NOUNS),
        noun3=rng.choice(NOUNS),
        verb=rng.choice(VERBS_PAST),
        verb2=rng.choice(VERBS_PAST),
        adv=rng.choice(ADVERBS),
        prep=rng.choice(PREPOSITIONS),
    )


def pseudo_word(rng: random.Random, syllables: int = 3) -> str:
    """A pronounceable made-up word such as 'talvimo' (for names and vocabularies beyond the lists)."""
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def unique_pseudo_words(rng: random.Random, count: int, exclude: set[str] | None = None) -> list[str]:
    """`count` distinct pseudo-words not in `exclude`, 2-4 syllables each."""
    taken = set(exclude or ())
    out: list[str] = []
    while len(out) < count:
        word = pseudo_word(rng, rng.randint(2, 4))
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def plain_words() -> tuple[str, ...]:
    """Every distinct lower-case word of the built-in lists (nouns, adjectives, verbs, adverbs, colors)."""
    seen: dict[str, None] = {}
    for group in (NOUNS, ADJECTIVES, VERBS_PAST, ADVERBS, COLORS):
        for word in group:
            seen.setdefault(word, None)
    return tuple(seen)
