"""A small generative grammar of plain English sentences for the demo speech corpus.

Sentences are 4-9 words, built from a handful of templates over fixed word lists
(subjects, verbs, objects, adjectives, places, times). The combinatorial space is large
(more than 10^9 distinct sentences), so sentences drawn from independent random streams
almost never coincide, and :func:`sentences` also removes duplicates within one draw.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SUBJECTS: tuple[str, ...] = (
    "farmer", "teacher", "doctor", "sailor", "painter", "baker", "pilot", "student",
    "neighbor", "driver", "singer", "gardener", "writer", "nurse", "miller", "hunter",
    "captain", "dancer", "builder", "tailor", "girl", "boy", "woman", "man",
    "child", "clerk", "judge", "chef", "poet", "guard", "merchant", "traveler",
)
ANIMALS: tuple[str, ...] = (
    "dog", "cat", "horse", "goat", "fox", "rabbit", "owl", "duck", "mouse", "bear",
    "crow", "sheep", "pony", "hen", "frog", "deer",
)
VERBS: tuple[str, ...] = (
    "found", "painted", "carried", "sold", "bought", "dropped", "cleaned", "opened",
    "fixed", "hid", "lost", "moved", "packed", "washed", "borrowed", "wrapped",
    "lifted", "pushed", "counted", "mended", "filled", "kept", "shared", "stole",
)
INTRANSITIVE: tuple[str, ...] = (
    "waited", "slept", "laughed", "sang", "rested", "wandered", "listened", "worked",
    "shouted", "danced", "smiled", "paused", "whistled", "stayed", "cried", "ran",
)
OBJECTS: tuple[str, ...] = (
    "boat", "lamp", "basket", "letter", "coat", "chair", "bottle", "map", "drum",
    "key", "book", "bell", "kettle", "ladder", "rope", "candle", "mirror", "blanket",
    "bucket", "clock", "wagon", "violin", "hammer", "jacket", "parcel", "window",
    "table", "ribbon", "shovel", "teapot", "cart", "box",
)
ADJECTIVES: tuple[str, ...] = (
    "old", "small", "heavy", "bright", "quiet", "green", "broken", "wooden", "tall",
    "red", "dusty", "shiny", "tiny", "golden", "yellow", "strange", "clean", "warm",
    "cold", "blue", "narrow", "gentle", "clever", "silver",
)
PLACES: tuple[str, ...] = (
    "near the harbor", "in the kitchen", "by the river", "at the market",
    "behind the barn", "under the bridge", "in the garden", "on the hill",
    "at the station", "in the forest", "by the old mill", "near the church",
    "in the attic", "at the school", "on the beach", "in the valley",
)
TIMES: tuple[str, ...] = (
    "yesterday", "today", "last night", "this morning", "at noon", "on Sunday",
    "before dawn", "after lunch", "in winter", "every evening", "at midnight",
    "last week", "on Monday", "in spring",
)
ADVERBS: tuple[str, ...] = (
    "slowly", "quickly", "quietly", "carefully", "loudly", "happily", "gently",
    "alone", "again", "softly",
)
DETS: tuple[str, ...] = ("the", "a", "my", "our", "her", "his", "that", "one")

MIN_WORDS = 4
MAX_WORDS = 9


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _np(rng: np.random.Generator, nouns: tuple[str, ...], *, p_adj: float = 0.5) -> str:
    det = _pick(rng, DETS)
    if rng.random() < p_adj:
        adj = _pick(rng, ADJECTIVES)
        return f"{det} {adj} {_pick(rng, nouns)}"
    return f"{det} {_pick(rng, nouns)}"


def _agent(rng: np.random.Generator) -> str:
    return _np(rng, SUBJECTS if rng.random() < 0.75 else ANIMALS)


def _transitive(rng: np.random.Generator) -> str:
    # e.g. "the quiet farmer painted a small boat near the harbor yesterday"
    parts = [_agent(rng), _pick(rng, VERBS), _np(rng, OBJECTS)]
    if rng.random() < 0.4:
        parts.append(_pick(rng, PLACES))
    if rng.random() < 0.35:
        parts.append(_pick(rng, TIMES))
    return " ".join(parts)


def _intransitive(rng: np.random.Generator) -> str:
    # e.g. "her old dog slept quietly in the garden last night"
    parts = [_agent(rng), _pick(rng, INTRANSITIVE)]
    if rng.random() < 0.5:
        parts.append(_pick(rng, ADVERBS))
    parts.append(_pick(rng, PLACES))
    if rng.random() < 0.35:
        parts.append(_pick(rng, TIMES))
    return " ".join(parts)


def _locative(rng: np.random.Generator) -> str:
    # e.g. "there was a dusty violin in the attic on Sunday"
    parts = ["there was", _np(rng, OBJECTS, p_adj=0.8), _pick(rng, PLACES)]
    if rng.random() < 0.35:
        parts.append(_pick(rng, TIMES))
    return " ".join(parts)


def _question(rng: np.random.Generator) -> str:
    # e.g. "who found the red basket at the market"
    verb = _pick(rng, VERBS)
    parts = ["who", verb, _np(rng, OBJECTS, p_adj=0.8)]
    if rng.random() < 0.6:
        parts.append(_pick(rng, PLACES))
    if rng.random() < 0.3:
        parts.append(_pick(rng, TIMES))
    return " ".join(parts)


_TEMPLATES: tuple[tuple[Callable[[np.random.Generator], str], float, str], ...] = (
    (_transitive, 0.5, "."),
    (_intransitive, 0.25, "."),
    (_locative, 0.15, "."),
    (_question, 0.10, "?"),
)


def sentence(rng: np.random.Generator) -> str:
    """Draw one sentence of ``MIN_WORDS``-``MAX_WORDS`` words, capitalized and punctuated."""
    weights = np.array([w for _, w, _ in _TEMPLATES])
    while True:
        make, _, stop = _TEMPLATES[int(rng.choice(len(_TEMPLATES), p=weights))]
        text = make(rng)
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            return text[0].upper() + text[1:] + stop


def sentences(
    rng: np.random.Generator,
    n: int,
    *,
    accept: Callable[[str], bool] | None = None,
) -> list[str]:
    """Draw ``n`` distinct sentences.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same list.
    n : int
        Number of sentences.
    accept : callable, optional
        Extra filter; sentences for which it returns False are redrawn. Used to give
        separate corpora disjoint parts of the sentence space.

    Returns
    -------
    list of str, length n
        Unique sentences in draw order.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct sentences")
        s = sentence(rng)
        if s in seen or (accept is not None and not accept(s)):
            continue
        seen.add(s)
        out.append(s)
    return out
