"""Built-in word lists, so that task generation and the local tokenizer need no network or extra package."""

from __future__ import annotations

import random
import re

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

COMMON_WORDS: tuple[str, ...] = tuple(
    """
    the of and to in is it you that he was for on are as with his they at be this have from or one had
    by word but not what all were we when your can said there use an each which she do how their if
    will up other about out many then them these so some her would make like him into time has look two
    more write go see number no way could people my than first water been call who its now find long
    down day did get come made may part over new after also back any only much before must through
    where right too means old same tell does set three want well even here why ask went men read need
    land different home us move try kind hand picture change off play spell air away animal house point
    page answer found study still learn should world high every near add food between own below country
    last school father keep tree never start city earth eye light thought head under story saw left few
    while along might close something seem next hard open example begin life always those both paper
    together got group often run important until children side feet car mile night walk white sea began
    grow took begin hear stop without second later miss idea enough eat face watch far really almost let
    above girl sometimes mountains cut young talk soon list song being leave family service failing
    since deploy fix error code port connection refused upstream unreachable file files search query
    command tool tools agent repository log logs status request result value variable variables question
    problem step steps think final text provided mentioned hidden special magic memorize quiz afterwards
    following common frequent coded words appear most keeper born town river flows into sells buys gives
    shares equal groups how many does have now which whose what who when where answer only
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
    "Nobody {verb} the {adj} {noun} {prep} the {noun2} that day.",
    "Once a {adj} {noun} {verb} a {noun2} {prep} an old {noun3}.",
)

_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiou])")
_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"


def sentence(rng: random.Random) -> str:
    """One grammatical, meaningless English sentence drawn from the built-in lists."""
    pattern = rng.choice(_SENTENCE_PATTERNS)
    text = pattern.format(
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
    return _ARTICLE.sub(r"\1n ", text)


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


def _distinct(*groups: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for group in groups:
        for word in group:
            seen.setdefault(word, None)
    return tuple(seen)


def content_words() -> tuple[str, ...]:
    """Distinct nouns, adjectives, verbs, adverbs and colors (no short function words)."""
    return _distinct(NOUNS, ADJECTIVES, VERBS_PAST, ADVERBS, COLORS)


def plain_words() -> tuple[str, ...]:
    """Every distinct lower-case word of the built-in lists, common function words included."""
    return _distinct(content_words(), COMMON_WORDS)
