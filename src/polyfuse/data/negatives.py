"""Hard negatives for image-text consistency: captions with one attribute swapped.

A contradiction detector trained only on random mismatches learns topic agreement ("a dog"
vs "a kitchen") and misses the failure that matters in catalogues: the image says red,
the text says blue. `attribute_swap` makes such negatives from true captions by replacing
one colour, count or paired object word ("a man in a red shirt" -> "a man in a blue
shirt"); the vocabularies are module constants a user can extend.
"""

from __future__ import annotations

from typing import Any

COLOURS = ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "orange", "purple")
COUNTS = ("two", "three", "four", "five")
OPPOSITES = {"man": "woman", "men": "women", "boy": "girl", "boys": "girls", "dog": "cat"}
OPPOSITES |= {v: k for k, v in OPPOSITES.items()}


def swap_spots(caption: str) -> list[int]:
    """Word positions of ``caption`` (split on whitespace) that `attribute_swap` can change."""
    return [
        i for i, w in enumerate(caption.split()) if w.lower() in (*COLOURS, *COUNTS, *OPPOSITES)
    ]


def attribute_swap(caption: str, rng: Any) -> str | None:
    """The caption with one colour, count or object word swapped ("a red shirt" -> "a blue
    shirt"), or None when it has none. ``rng``: a `numpy.random.Generator`."""
    words = caption.split()
    spots = swap_spots(caption)
    if not spots:
        return None
    i = spots[int(rng.integers(len(spots)))]
    w = words[i].lower()
    pool = COLOURS if w in COLOURS else COUNTS if w in COUNTS else (OPPOSITES[w],)
    words[i] = str(rng.choice([x for x in pool if x != w]))
    return " ".join(words)


def alternatives(caption: str) -> list[str]:
    """Every single-word swap of ``caption``: each swappable word replaced by each other
    word of its group ("two dogs" -> "three dogs", "four dogs", "five dogs", "two cats")."""
    words = caption.split()
    out: list[str] = []
    for i in swap_spots(caption):
        w = words[i].lower()
        pool = COLOURS if w in COLOURS else COUNTS if w in COUNTS else (OPPOSITES[w],)
        out.extend(" ".join([*words[:i], x, *words[i + 1 :]]) for x in pool if x != w)
    return out
