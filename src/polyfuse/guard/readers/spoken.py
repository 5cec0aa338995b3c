"""Turn speech-recognition words into text that PII detectors understand.

Speech recognisers write what people *say*: "two one nine oh nine", "double five",
"john dot smith at example dot com", or Whisper's own "2-1-9-0-9", "4,539,148,803,436,467".
Text detectors look for *written* forms ("219-09-1937", "4539 1488 0343 6467",
"john.smith@example.com"). `normalise_spoken` rewrites the first into the second and keeps,
for every character of the result, the index of the recognised word it came from, so that a
detector's character span maps back to a time range of the audio (`NormalisedText.seconds_of`).

Rules (deliberately few, each tested):

* **Numbers.** Digit words (``zero`` .. ``nine``, ``oh``/``o`` next to another digit),
  ``double``/``triple`` + digit, teens, tens (``twenty three``), ``X hundred [Y]`` and
  written digits form *numeric chunks*. Chunks next to each other, or separated only by
  ``-``, ``,`` or a spoken ``dash``/``hyphen``, form a *run*. A run of one spoken chunk
  ("one", "twenty") stays a word; anything else becomes digits.
* **Grouping of a run.** When the digit count has a standard form (9 -> ``123-45-6789``,
  10 -> ``415-555-0132``, 11 starting with 1 -> ``1-415-555-0132``, 15 ->
  ``3782 822463 10005``, 16 -> ``4111 1111 1111 1111``), that form is used, with spaces
  instead of dashes when the speaker's own groups (a comma, dash or pause between spoken
  digits, or Whisper's digit groups) match it and were not dash-separated; a 5+4 run
  (ZIP+4) keeps its groups. Groups Whisper lists with a comma and a space ("699, 956,
  915": the speaker paused) are kept as the speaker said them (``699 956 915``) even when
  the digit count has a standard form; commas without a space ("78,651,450") are
  thousands separators and are dropped. Other runs keep the speaker's groups when every group has at
  least two digits and Whisper did not use thousands commas, else become one digit run.
* **Homophones inside digit runs.** What Whisper writes for a misheard digit word
  ("Nero", "to", "free", "I'm") becomes the digit word between numbers long enough to be
  a phone, card or SSN; "Nero" and "hero" also anywhere in a chain of digits of that
  length ("Nero 7-7, Nero Nero, Nero 6-3, 9-6-6"); in a listing of digits joined by
  ``-`` or ``.`` ("A-A-2-A-52732", "A.A. 2. A. 5. 2. 7. 3.", a real voice's "eight"
  heard as the letter A) the letter "A" is repaired too, and the dots become dashes
  (`_repair_listed`).
* **Glued words.** A number of three or more digits written right after or before a
  word ("CC4047737215142", "SN84966389", "1-984-182-0190mobile") is split from it
  (not from "st", "nd", "rd", "th", "s": "1990s").
* **E-mail.** ``at``/``@`` with a dotted chain on each side (``dot``/``.``, and ``_``,
  ``underscore``, ``-``, ``dash`` in the local part) becomes an address only when the
  result has a valid e-mail shape and a plausible top-level domain.

Everything else passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "DIGIT_HOMOPHONES",
    "DIGIT_WORDS",
    "LISTED_HOMOPHONES",
    "NormalisedText",
    "Word",
    "normalise_spoken",
]


@dataclass(frozen=True)
class Word:
    """One recognised word with its time range.

    Attributes:
        text: the word as the recogniser wrote it; Whisper puts a leading space on words
            that start after a space (" My", " 219", "-09").
        start: start time in seconds.
        end: end time in seconds.
        probability: the recogniser's confidence in [0, 1].
    """

    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class NormalisedText:
    """A transcript rewritten for text detectors, with a character -> word map.

    Attributes:
        text: the normalised transcript.
        char_words: for each character of ``text``, the index in ``words`` of the word it
            came from, or -1 for an inserted space.
        words: the recognised words.
    """

    text: str
    char_words: tuple[int, ...]
    words: tuple[Word, ...] = field(repr=False)

    def words_of(self, span: tuple[int, int]) -> list[int]:
        """Sorted indices of the words that the characters ``span`` (end exclusive) touch.

        A span that touches no word (only inserted spaces) gets the nearest word before
        it, or after it when there is none before; an empty transcript gets ``[]``.
        """
        start, end = max(0, span[0]), min(len(self.text), span[1])
        touched = sorted({w for w in self.char_words[start:end] if w >= 0})
        if touched or not self.words:
            return touched
        before = [w for w in self.char_words[:start] if w >= 0]
        if before:
            return [before[-1]]
        after = [w for w in self.char_words[end:] if w >= 0]
        return [after[0]] if after else []

    def seconds_of(self, span: tuple[int, int]) -> tuple[float, float]:
        """``(start, end)`` in seconds of the words that the character ``span`` touches.

        Returns ``(0.0, 0.0)`` for an empty transcript.
        """
        idx = self.words_of(span)
        if not idx:
            return (0.0, 0.0)
        return (
            float(min(self.words[i].start for i in idx)),
            float(max(self.words[i].end for i in idx)),
        )


# --- items: sub-word tokens with a per-character word map -------------------------------------

#: A word written right after one of these continues it ("4" "-" "1" -> "4-1").
_GLUE = frozenset("-–@/'_+")
_TOKEN = re.compile(r"\d+|[^\W\d_]+(?:['’][^\W\d_]+)*|\S")


@dataclass
class _Item:
    text: str
    cw: list[int]  # word index of each character
    space: bool  # a space precedes this item
    kind: str  # "num" (written digits), "word", "punct"

    @property
    def low(self) -> str:
        return self.text.lower().replace("’", "'")

    @property
    def alnum(self) -> bool:
        return self.kind in ("num", "word")


def _items(words: Sequence[Word]) -> list[_Item]:
    out: list[_Item] = []
    prev_text = ""
    for wi, word in enumerate(words):
        text = word.text
        first = True
        for m in _TOKEN.finditer(text):
            tok = m.group()
            if first:
                # Whisper marks word starts with a space; hand-made words may not.
                space = text[: m.start()] != "" or (
                    bool(prev_text) and prev_text[-1] not in _GLUE and tok[0].isalnum()
                )
            else:
                space = text[m.start() - 1].isspace()
            first = False
            kind = "num" if tok.isdigit() else "word" if tok[0].isalpha() else "punct"
            out.append(_Item(tok, [wi] * len(tok), space, kind))
        if text.strip():
            prev_text = text.rstrip()
    return out


# --- numbers --------------------------------------------------------------------------------

_UNITS = {
    w: i
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
}
_ZEROS = {"oh", "o"}
_TEENS = {
    w: 10 + i
    for i, w in enumerate(
        [
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    )
}
_REPEAT = {"double": 2, "triple": 3}
#: Words that say digits: ``zero`` .. ``nine``, ``oh``/``o``, ``double``/``triple``.
DIGIT_WORDS = frozenset(_UNITS) | _ZEROS | frozenset(_REPEAT)
_SEP_PUNCT = {"-", ",", "–"}
_SEP_WORDS = {"dash", "hyphen"}
#: Seconds of silence between two spoken digits that start a new digit group.
PAUSE_SECONDS = 0.35


@dataclass
class _Chunk:
    digits: str
    cw: list[int]
    first: int  # item index range [first, last]
    last: int
    written: bool
    spoken_digit: bool  # a digit word (possibly "oh"); "oh" needs a numeric neighbour
    space: bool = False  # a space precedes the chunk


def _unit(item: _Item) -> int | None:
    if item.kind == "num" and len(item.text) == 1:
        return int(item.text)
    return _UNITS.get(item.low) if item.kind == "word" else None


def _hundreds(items: list[_Item], i: int) -> _Chunk:
    """``X hundred [tens [unit] | teen | unit]`` starting at item ``i`` (a unit word)."""
    it, hundred = items[i], items[i + 1]
    value, cw, last = 100 * _UNITS[it.low], it.cw[:1] + hundred.cw[:1] * 2, i + 1
    nxt = items[i + 2] if i + 2 < len(items) else None
    if nxt is not None and nxt.kind == "word":
        rest = _chunk_at(items, i + 2)
        if rest is not None and not rest.spoken_digit and len(rest.digits) == 2:
            value, last, cw = value + int(rest.digits), rest.last, cw[:1] + rest.cw
        elif rest is not None and rest.spoken_digit and rest.digits in set("123456789"):
            value, last, cw = value + int(rest.digits), i + 2, cw[:2] + rest.cw
    after = _chunk_at(items, last + 1) if last > i + 1 and last + 1 < len(items) else None
    if after is not None and after.spoken_digit:
        # "one eight hundred five five five ..." is 1-800-555, not 1-805-55
        value, cw, last = 100 * _UNITS[it.low], cw[:1] + hundred.cw[:1] * 2, i + 1
    return _Chunk(str(value), cw, i, last, False, False)


def _chunk_at(items: list[_Item], i: int) -> _Chunk | None:
    """The numeric chunk that starts at item ``i``, if any."""
    it = items[i]
    nxt = items[i + 1] if i + 1 < len(items) else None
    if it.kind == "num":
        return _Chunk(it.text, list(it.cw), i, i, True, False)
    low = it.low if it.kind == "word" else ""
    unit = None if nxt is None or not nxt.space else _unit(nxt)
    if low in _REPEAT and unit is not None and nxt is not None:
        n = _REPEAT[low]
        return _Chunk(str(unit) * n, it.cw[:1] * (n - 1) + nxt.cw[:1], i, i + 1, False, True)
    if low in _ZEROS:
        return _Chunk("0", it.cw[:1], i, i, False, True)
    if low in _TEENS:
        return _Chunk(str(_TEENS[low]), it.cw[:1] * 2, i, i, False, False)
    if low in _TENS:
        if nxt is not None and nxt.kind == "word" and _UNITS.get(nxt.low, 0) > 0:
            value = _TENS[low] + _UNITS[nxt.low]
            return _Chunk(str(value), it.cw[:1] + nxt.cw[:1], i, i + 1, False, False)
        return _Chunk(str(_TENS[low]), it.cw[:1] * 2, i, i, False, False)
    if low in _UNITS:
        if nxt is not None and nxt.low == "hundred" and low != "zero":
            return _hundreds(items, i)
        return _Chunk(str(_UNITS[low]), it.cw[:1], i, i, False, True)
    return None


def _is_sep(item: _Item) -> bool:
    return (item.kind == "punct" and item.text in _SEP_PUNCT) or (
        item.kind == "word" and item.low in _SEP_WORDS
    )


_CANON: dict[int, tuple[tuple[int, ...], str]] = {
    9: ((3, 2, 4), "-"),
    10: ((3, 3, 4), "-"),
    15: ((4, 6, 5), " "),
    16: ((4, 4, 4, 4), " "),
}


def _format_run(
    chunks: list[_Chunk], seps: list[list[_Item]], words: Sequence[Word]
) -> tuple[str, list[int]]:
    """Digits of a run, grouped (see the module docstring), with their word map."""
    digits = "".join(c.digits for c in chunks)
    cw = [w for c in chunks for w in c.cw]
    groups: list[int] = [len(chunks[0].digits)]
    commas = False  # Whisper's thousands separators: "4,539,148"
    listed = True  # every group boundary is a comma and a space: "699, 956, 915"
    dash_only = True
    for k in range(1, len(chunks)):
        prev, cur, between = chunks[k - 1], chunks[k], seps[k - 1]
        comma = any(s.text == "," for s in between)
        commas = commas or (comma and prev.written and cur.written and not cur.space)
        listed = listed and comma and cur.space
        gap = words[cur.cw[0]].start - words[prev.cw[-1]].end
        new_group = bool(between) or prev.written or cur.written or gap >= PAUSE_SECONDS
        if new_group:
            dash_only = dash_only and any(
                s.text in ("-", "–") or s.low in _SEP_WORDS for s in between
            )
            groups.append(len(cur.digits))
        else:
            groups[-1] += len(cur.digits)
    canon = _CANON.get(len(digits))
    if len(digits) == 11 and digits[0] == "1":
        canon = ((1, 3, 3, 4), "-")
    spoken_groups = len(groups) > 1 and min(groups) >= 2 and not commas
    if canon is not None and spoken_groups and tuple(groups) == canon[0]:
        layout, sep = canon[0], "-" if dash_only else " "
    elif spoken_groups and listed:  # the speaker's own groups, as they listed them
        layout, sep = tuple(groups), " "
    elif canon is not None and tuple(groups) != (5, 4):  # ZIP+4 keeps its shape
        layout, sep = canon
    elif spoken_groups:
        layout, sep = tuple(groups), "-" if dash_only else " "
    else:
        return digits, cw
    text: list[str] = []
    out_cw: list[int] = []
    pos = 0
    for n in layout:
        if pos:
            text.append(sep)
            out_cw.append(cw[pos - 1])
        text.append(digits[pos : pos + n])
        out_cw.extend(cw[pos : pos + n])
        pos += n
    return "".join(text), out_cw


def _chunks(items: list[_Item]) -> dict[int, _Chunk]:
    """Numeric chunks by their first item index."""
    chunks_at: dict[int, _Chunk] = {}
    i = 0
    while i < len(items):
        chunk = _chunk_at(items, i)
        if chunk is not None:
            chunk.space = items[i].space
            chunks_at[i] = chunk
            i = chunk.last + 1
        else:
            i += 1
    # "oh"/"o" is a digit only in a block of directly adjacent chunks that holds another
    # digit ("oh seven", "four oh one", "oh oh seven"); "oh, one more thing" keeps its "oh".
    block: list[int] = []
    for start in [*sorted(chunks_at), -1]:
        if block and (start < 0 or chunks_at[block[-1]].last + 1 != start):
            if all(items[b].low in _ZEROS for b in block):
                for b in block:
                    del chunks_at[b]
            block = []
        if start >= 0:
            block.append(start)
    return chunks_at


# --- homophone repair inside digit runs --------------------------------------------------------

#: Words Whisper writes for digit words it mishears in synthetic or unclear speech ("zero"
#: -> "Nero"). A *strong* homophone is rarely said before a number, so one number beside it
#: is enough; a *weak* one is an everyday word ("for", "to", "I'm") and is repaired only
#: between two numbers whose digits, with it, reach `HOMOPHONE_RUN` ("30 to 886104..." is a
#: card, "from 9 to 5" stays as said).
_STRONG_HOMOPHONES = {"nero": "zero"}
#: Homophones that are everyday words but no function words ("hero" for "zero"): repaired
#: only inside a digit chain (`_chain_digits`), never beside a single number.
_CHAIN_HOMOPHONES = {"hero": "zero", "heroes": "zero"}
_WEAK_HOMOPHONES = {
    "for": "four",
    "fore": "four",
    "to": "two",
    "too": "two",
    "free": "three",
    "tree": "three",
    "ate": "eight",
    "won": "one",
    "i'm": "nine",
    "i": "nine",
    "nein": "nine",
}
#: Homophones repaired only inside a digit listing (`_repair_listed`): a real voice's
#: "eight" cut short, which Whisper writes as the letter ("A-A-2-A-52732").
_LISTED_HOMOPHONES = {"a": "eight", "eh": "eight"}
_ALL_HOMOPHONES = {
    **_STRONG_HOMOPHONES,
    **_CHAIN_HOMOPHONES,
    **_WEAK_HOMOPHONES,
    **_LISTED_HOMOPHONES,
}
#: Words the digit repair rewrites beside numbers (what Whisper writes for a misheard
#: digit word).
DIGIT_HOMOPHONES = (
    frozenset(_STRONG_HOMOPHONES) | frozenset(_CHAIN_HOMOPHONES) | frozenset(_WEAK_HOMOPHONES)
)
#: Words the digit repair rewrites only where Whisper lists digits with ``-`` or ``.``.
LISTED_HOMOPHONES = frozenset(_LISTED_HOMOPHONES)
#: Fewest digits of a run (the homophone included) in which a weak homophone is repaired:
#: the length of the shortest phone number people say digit by digit.
HOMOPHONE_RUN = 7


def _digits_beside(items: list[_Item], i: int, step: int) -> int:
    """Digits of the numeric items next to item ``i`` in direction ``step`` (one
    separator between them allowed)."""
    count, j = 0, i + step
    while 0 <= j < len(items):
        it = items[j]
        if it.kind == "num":
            count += len(it.text)
        elif it.kind == "word" and (it.low in _UNITS or (it.low in _ZEROS and count)):
            count += 1
        elif not (_is_sep(it) and count == 0 and j == i + step):
            break
        j += step
    return count


#: Punctuation Whisper writes between the digits or digit groups of one spoken number.
_CHAIN_SEPS = frozenset({"-", "–", ".", ","})


def _chain_digits(items: list[_Item], i: int) -> tuple[int, int]:
    """Digits and homophones of the digit chain through item ``i``: numbers, digit words
    and strong or chain homophones, next to each other or joined by one ``-``, ``.`` or
    ``,`` ("Nero 7-7, Nero Nero, Nero 6-3, 9-6-6": 7 digits, 4 homophones)."""

    def element(it: _Item) -> int:  # digits it says, -1 for a homophone, 0 neither
        if it.kind == "num":
            return len(it.text)
        if it.kind != "word":
            return 0
        if it.low in _UNITS or it.low in _ZEROS:
            return 1
        return -1 if it.low in _STRONG_HOMOPHONES or it.low in _CHAIN_HOMOPHONES else 0

    digits, homophones = 0, 1
    for step in (-1, 1):
        j = i + step
        while 0 <= j < len(items):
            if items[j].text in _CHAIN_SEPS and 0 <= j + step < len(items):
                j += step
            n = element(items[j])
            if not n:
                break
            digits, homophones = (digits + n, homophones) if n > 0 else (digits, homophones + 1)
            j += step
    return digits, homophones


def _repair_homophones(items: list[_Item]) -> list[_Item]:
    """Digit words in place of their homophones inside digit runs (see `HOMOPHONE_RUN`).

    A strong homophone ("Nero") beside a number of two or more digits, a weak one (an
    everyday word) between two numbers whose digits with it reach `HOMOPHONE_RUN`, and a
    strong or chain homophone ("Nero", "hero") in a digit chain (`_chain_digits`) of at
    least `HOMOPHONE_RUN` digits (homophones counted one each) that holds at least as many
    said digits as homophones.
    """
    out = list(items)
    for i, it in enumerate(out):
        if it.kind != "word" or (
            it.low not in _STRONG_HOMOPHONES
            and it.low not in _WEAK_HOMOPHONES
            and it.low not in _CHAIN_HOMOPHONES
        ):
            continue
        if it.low in _STRONG_HOMOPHONES or it.low in _CHAIN_HOMOPHONES:
            digits, homophones = _chain_digits(out, i)
            chain = digits + homophones >= HOMOPHONE_RUN and digits >= homophones
            if chain or it.low in _CHAIN_HOMOPHONES:
                if chain:
                    digit = _ALL_HOMOPHONES[it.low]
                    out[i] = _Item(digit, it.cw[:1] * len(digit), it.space, "word")
                continue
        left, right = _digits_beside(out, i, -1), _digits_beside(out, i, 1)
        if it.low in _STRONG_HOMOPHONES:
            ok, digit = (left or right) and left + right + 1 >= 3, _STRONG_HOMOPHONES[it.low]
        else:
            ok, digit = (
                left and right and left + right + 1 >= HOMOPHONE_RUN,
                _WEAK_HOMOPHONES[it.low],
            )
        if ok:
            out[i] = _Item(digit, it.cw[:1] * len(digit), it.space, "word")
    return out


#: Punctuation Whisper puts between the digits it lists one by one ("2-1-9", "5. 2. 7.",
#: "A, A, 2, A, 52732").
_LIST_SEPS = frozenset({"-", "–", ".", ","})


def _repair_listed(items: list[_Item]) -> list[_Item]:
    """Digits Whisper lists one by one, joined by ``-``, ``.`` or ``,`` ("A-A-2-A-52732",
    "A.A. 2. A. 5. 2. 7. 3.", "A, A, 2, A, 52732"), as one digit run with its homophones
    repaired.

    A listing is a chain of numbers, digit words and homophones joined by one ``-``,
    ``.`` or ``,`` each, holding a homophone, at least `HOMOPHONE_RUN` digits (a homophone counts
    one), more written or spoken digits than homophones and, where a ``.`` joins it, no
    number of more than four digits (Whisper's groups: "A.A. 2. A.5. 273."). Its homophones
    become digit words and its dots dashes; chains without a homophone ("10.0.0.1",
    "192.168.1.20") are left alone.
    """
    out = list(items)

    def element(it: _Item) -> int:  # 1 digit, 2 homophone, 0 neither
        if it.kind == "num" or (it.kind == "word" and (it.low in _UNITS or it.low in _ZEROS)):
            return 1
        return 2 if it.kind == "word" and it.low in _ALL_HOMOPHONES else 0

    i = 0
    while i < len(out):
        if not element(out[i]):
            i += 1
            continue
        j = i
        while j + 2 < len(out) and out[j + 1].text in _LIST_SEPS and element(out[j + 2]):
            j += 2
        chain = range(i, j + 1, 2)
        homophones = sum(element(out[k]) == 2 for k in chain)
        digits = sum(len(out[k].text) if out[k].kind == "num" else 1 for k in chain)
        dotted = any(out[k].text == "." for k in range(i + 1, j, 2))
        short = all(out[k].kind != "num" or len(out[k].text) <= 4 for k in chain)
        if (
            homophones
            and digits >= HOMOPHONE_RUN
            and digits - homophones > homophones
            and (short or not dotted)
        ):
            for k in chain:
                if element(out[k]) == 2:
                    digit = _ALL_HOMOPHONES[out[k].low]
                    out[k] = _Item(digit, out[k].cw[:1] * len(digit), out[k].space, "word")
            for k in range(i + 1, j, 2):
                if out[k].text == ".":
                    out[k] = _Item("-", out[k].cw, out[k].space, "punct")
        i = j + 1
    return out


def _repair_dotted(items: list[_Item]) -> list[_Item]:
    """Whisper's dotted digits ("0.5.4.28.6.117") as one number: five or more short
    written numbers joined by dots without spaces (a decimal "3.5", a version "1.2.3" and
    an IPv4 address have at most four)."""
    out = list(items)
    i = 0
    while i < len(out):
        j = i
        while (
            j + 2 < len(out)
            and out[j].kind == "num"
            and out[j + 1].text == "."
            and not out[j + 1].space
            and out[j + 2].kind == "num"
            and not out[j + 2].space
        ):
            j += 2
        if j - i >= 8 and all(len(out[k].text) <= 3 for k in range(i, j + 1, 2)):
            for k in range(i + 1, j, 2):  # a comma with no space is a thousands separator
                out[k] = _Item(",", out[k].cw, False, "punct")
        i = max(j, i) + 1
    return out


def _numbers(items: list[_Item], words: Sequence[Word]) -> list[_Item]:
    chunks_at = _chunks(items)
    out: list[_Item] = []
    i = 0
    while i < len(items):
        if i not in chunks_at:
            out.append(items[i])
            i += 1
            continue
        run = [chunks_at[i]]
        seps: list[list[_Item]] = []
        j = run[-1].last + 1
        while True:
            k = j
            while k < len(items) and _is_sep(items[k]) and k - j < 2:
                k += 1
            if k not in chunks_at:
                break
            seps.append(items[j:k])
            run.append(chunks_at[k])
            j = run[-1].last + 1
        if len(run) == 1 and run[0].first == run[0].last and not run[0].written:
            out.append(items[i])  # a lone "one" or "twenty" stays a word
        else:
            text, cw = _format_run(run, seps, words)
            out.append(_Item(text, cw, items[i].space, "num"))
        i = j
    return out


# --- e-mail addresses -----------------------------------------------------------------------

_EMAIL = re.compile(r"^[a-z0-9](?:[a-z0-9._%+-]*[a-z0-9])?@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}$")
_TLD_NAMES = (
    "com org net edu gov mil int info biz io ai dev app co me us uk de fr ca au in jp cn "
    "nl eu ru br es it ch se no pl be at dk fi ie nz mx kr za xyz online site tech email"
)
#: Top-level domains accepted besides any two-letter (country) one.
_TLDS = frozenset(_TLD_NAMES.split())
_SPOKEN_SEP = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
_LOCAL_SEPS = {".", "_", "-"}
_DOMAIN_SEPS = {".", "-"}


def _sep_char(item: _Item, allowed: set[str]) -> str | None:
    char = item.text if item.kind == "punct" else _SPOKEN_SEP.get(item.low)
    return char if char in allowed else None


def _is_at(item: _Item) -> bool:
    return item.text == "@" or (item.kind == "word" and item.low == "at")


def _label(item: _Item) -> bool:
    return item.alnum and not _is_at(item)


def _left_end(items: list[_Item], a: int) -> int | None:
    """First item of the local part before the ``at`` at ``a``: label (sep label)*."""
    lo = a - 1
    if lo < 0 or not _label(items[lo]):
        return None
    while lo > 0:
        prev = items[lo - 1]
        if _label(prev) and not items[lo].space:  # glued: "john" "23"
            lo -= 1
        elif lo > 1 and _sep_char(prev, _LOCAL_SEPS) and _label(items[lo - 2]):
            lo -= 2
        else:
            break
    return lo


def _right_end(items: list[_Item], a: int) -> int | None:
    """Last item of the domain after the ``at`` at ``a``: label (sep label)*."""
    hi = a + 1
    if hi >= len(items) or not _label(items[hi]):
        return None
    while hi + 1 < len(items):
        nxt = items[hi + 1]
        if _label(nxt) and not nxt.space:
            hi += 1
        elif hi + 2 < len(items) and _sep_char(nxt, _DOMAIN_SEPS) and _label(items[hi + 2]):
            hi += 2
        else:
            break
    if hi + 1 < len(items) and _is_at(items[hi + 1]):  # it is the local part of another address
        return None
    return hi


def _address(items: list[_Item], lo: int, a: int, hi: int) -> _Item | None:
    """The address spelt by items ``lo..hi`` with the ``at`` at ``a``, if it is valid."""
    parts: list[str] = []
    cw: list[int] = []
    for k in range(lo, hi + 1):
        it = items[k]
        if k == a:
            piece = "@"
        elif it.alnum and it.low not in _SPOKEN_SEP:
            piece = it.low
        else:
            piece = _sep_char(it, _LOCAL_SEPS | _DOMAIN_SEPS) or it.text
        parts.append(piece)
        cw.extend(it.cw if len(piece) == len(it.text) else it.cw[:1] * len(piece))
    address = "".join(parts)
    tld = address.rsplit(".", 1)[-1]
    if _EMAIL.match(address) and (tld in _TLDS or len(tld) == 2):
        return _Item(address, cw, items[lo].space, "word")
    return None


def _emails(items: list[_Item]) -> list[_Item]:
    """Replace spoken or spaced e-mail addresses, last first (so "me at john dot smith at
    example dot com" gives "me john.smith@example.com", not "me@john.smith")."""
    items = list(items)
    a = len(items) - 1
    while a > 0:
        lo = _left_end(items, a) if _is_at(items[a]) else None
        hi = _right_end(items, a) if lo is not None else None
        found = _address(items, lo, a, hi) if lo is not None and hi is not None else None
        if found is not None and lo is not None and hi is not None:
            items[lo : hi + 1] = [found]
            a = lo - 1
        else:
            a -= 1
    return items


#: Words Whisper writes for the spoken separators and endings of an address: "dot" as
#: "not", "com" as "calm"/"come", "at" as "and". Repaired only where the
#: result spells a domain that ends in a top-level domain that is no everyday word ("not
#: in", "not us" stay as said).
_DOT_HOMOPHONES = frozenset({"not", "dot"})
_TLD_HOMOPHONES = {"calm": "com", "come": "com", "comm": "com"}
_PLAIN_TLDS = frozenset({"com", "org", "net", "edu", "gov", "info", "biz", "io", "de"})
_AT_HOMOPHONES = frozenset({"and"})


def _domain_chain(items: list[_Item], first: int) -> list[_Item]:
    """The dotted domain (label (sep label)*, a written dot never followed by a space)
    that starts at item ``first`` and ends in a known top-level domain, else ``[]``."""
    hi = _right_end(items, first - 1) if _label(items[first]) else None
    chain = items[first : hi + 1] if hi is not None else []
    tight = all(not (c.text == "." and chain[k + 1].space) for k, c in enumerate(chain[:-1]))
    dotted = any(_sep_char(c, _DOMAIN_SEPS) == "." for c in chain)
    return chain if tight and dotted and chain[-1].low in _TLDS else []


def _repair_address_words(items: list[_Item]) -> list[_Item]:
    """ "right not calm" -> "right dot com"; then "X and Y dot com" -> "X at Y dot com"."""
    # Whisper writes the speaker's pause before "dot" as a comma: "made up, not calm"
    out = [
        it
        for k, it in enumerate(items)
        if not (
            it.text == ","
            and 0 < k < len(items) - 2
            and _label(items[k - 1])
            and items[k + 1].low in _DOT_HOMOPHONES
            and _TLD_HOMOPHONES.get(items[k + 2].low, items[k + 2].low) in _PLAIN_TLDS
        )
    ]
    for i in range(1, len(out) - 1):
        dot, tld = out[i], out[i + 1]
        ending = _TLD_HOMOPHONES.get(tld.low, tld.low)
        if dot.low in _DOT_HOMOPHONES and _label(out[i - 1]) and ending in _PLAIN_TLDS:
            out[i] = _Item("dot", dot.cw[:1] * 3, dot.space, "word")
            out[i + 1] = _Item(ending, tld.cw[:1] * len(ending), tld.space, "word")
    for a, it in enumerate(out[:-1]):
        spoken_and = it.kind == "word" and it.low in _AT_HOMOPHONES
        if spoken_and and a > 0 and _label(out[a - 1]) and _domain_chain(out, a + 1):
            out[a] = _Item("at", it.cw[:1] * 2, it.space, "word")
    return out


def _domains(items: list[_Item]) -> list[_Item]:
    """A spoken domain ("example dot com", no "at" before it) written as one word."""
    out: list[_Item] = []
    i = 0
    while i < len(items):
        chain = _domain_chain(items, i)
        if not chain:
            out.append(items[i])
            i += 1
            continue
        text: list[str] = []
        cw: list[int] = []
        for c in chain:
            piece = _sep_char(c, _DOMAIN_SEPS) or c.low
            text.append(piece)
            cw.extend(c.cw if len(piece) == len(c.cw) else c.cw[:1] * len(piece))
        out.append(_Item("".join(text), cw, chain[0].space, "word"))
        i += len(chain)
    return out


# --- the whole pass -------------------------------------------------------------------------

#: Suffixes that belong to the number before them ("21st", "1990s").
_NUMBER_SUFFIXES = frozenset({"st", "nd", "rd", "th", "s"})


def _glued(word: _Item | None, number: _Item | None) -> bool:
    """Whether ``word`` and ``number`` are a letters-only word and a 3+ digit number
    written without a space between them (in either order)."""
    if word is None or number is None or word.kind != "word" or number.kind != "num":
        return False
    return (
        word.text.isalpha()
        and word.low not in _NUMBER_SUFFIXES
        and sum(c.isdigit() for c in number.text) >= 3
    )


def normalise_spoken(words: Sequence[Word]) -> NormalisedText:
    """Rewrite recognised ``words`` into detector-friendly text with a char -> word map.

    Args:
        words: recognised words in time order (from `polyfuse.guard.readers.asr.transcribe`, or
            hand-made: leading spaces are optional).

    Returns:
        The normalised transcript; see the module docstring for the rules.
    """
    words = tuple(words)
    items = _repair_homophones(_repair_listed(_items(words)))
    items = _numbers(_repair_dotted(items), words)
    items = _domains(_emails(_repair_address_words(items)))
    text: list[str] = []
    cw: list[int] = []
    prev: _Item | None = None
    for it in items:
        # Whisper glues an abbreviation to the number after it ("CC4047737215142") and a
        # word to the number before it ("0190mobile"): split them.
        glued = _glued(prev, it) or _glued(it, prev)
        if (it.space or glued) and text:
            text.append(" ")
            cw.append(-1)
        prev = it
        text.append(it.text)
        cw.extend(it.cw)
    return NormalisedText("".join(text), tuple(cw), words)
