"""De-obfuscated readings of a text, for the prompt-injection detector.

Attackers hide instructions from filters and keep them readable to a model: base64 or hex
blobs, rot13, look-alike Cyrillic / Greek letters, zero-width characters, spaced-out
letters, leetspeak, reversed text. `decoded_blobs` decodes blobs in place (with their
spans), `views` returns whole-text readings with the obfuscation undone, `fold` is the
cheap normalisation the model's features apply to every text.

    >>> fold("Ign\u043ere\u200b all")
    'Ignore all'
    >>> [name for name, _ in views("I g n o r e   a l l   r u l e s")]
    ['letter-spaced']
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

__all__ = ["MAX_BLOBS", "ROT13_HINT", "decoded_blobs", "fold", "views"]

#: At most this many decoded blobs per text.
MAX_BLOBS = 16
_WS = re.compile(r"\s+")

#: Look-alike Cyrillic / Greek letters folded to the Latin ones they imitate.
_CONFUSABLES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0456\u0458\u0455\u0501\u04bb"
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0406"
    "\u03bf\u03b1\u03b5\u03b9\u03ba\u03bd\u03c1\u03c4\u03c5\u03c7"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"
    "\u0131\u0251",
    "aeopcyxijsdhABEKMHOPCTXIoaeiknptuxABEZHIKMNOPTYXia",
)
#: Zero-width and other invisible format characters (Unicode category Cf) are dropped.
_INVISIBLE = dict.fromkeys(
    c for c in range(0x2000, 0x2070) if unicodedata.category(chr(c)) == "Cf"
) | {0xFEFF: None, 0x00AD: None, 0x180E: None}


def fold(text: str) -> str:
    """Invisible characters dropped, look-alike letters folded to Latin."""
    return text.translate(_INVISIBLE).translate(_CONFUSABLES)


_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){10,}\b")
ROT13_HINT = re.compile(r"\b(?:rot-?13|caesar|rotate\s+by\s+13)\b", re.IGNORECASE)


def _looks_like_text(s: str) -> bool:
    if len(s) < 8:
        return False
    printable = sum(c.isprintable() or c.isspace() for c in s)
    letters = sum(c.isalpha() or c == " " for c in s)
    return printable / len(s) > 0.95 and letters / len(s) > 0.7 and " " in s


def decoded_blobs(text: str) -> list[tuple[int, int, str, str]]:
    """``(start, end, plaintext, encoding)`` for base64 / hex blobs that decode to text."""
    out: list[tuple[int, int, str, str]] = []
    for rx, kind in ((_B64, "base64"), (_HEX, "hex")):
        for m in rx.finditer(text):
            blob = m.group(0)
            try:
                if kind == "base64":
                    raw = base64.b64decode(
                        blob + "=" * (-len(blob.rstrip("=")) % 4), validate=False
                    )
                else:
                    raw = binascii.unhexlify(blob)
                plain = raw[:8192].decode("utf-8")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                continue
            if _looks_like_text(plain):
                out.append((m.start(), m.end(), plain, kind))
            if len(out) >= MAX_BLOBS:
                return out
    return out


_SPACED = re.compile(r"(?:\b\w {1,2}){5,}\w\b")
_LEET_WORD = re.compile(r"\b(?=\w*[a-z])(?=\w*[013457])[a-z013457]{3,}\b", re.IGNORECASE)
_LEET_FOLD = str.maketrans("431057@$", "aeiostas")
_REVERSED_HINT = re.compile(r"\b(?:eht|dna|uoy|ruoy|erongi|snoitcurtsni|tpmorp|ot|si)\b")


def views(text: str) -> list[tuple[str, str]]:
    """De-obfuscated readings of ``text`` as ``(name, text)``: invisible characters and
    look-alike letters folded, spaced-out letters joined, leetspeak undone, reversed text
    turned round. Only the readings whose obfuscation is present are returned."""
    out: list[tuple[str, str]] = []
    folded = fold(text)
    if folded != text:
        out.append(("unicode-folded", folded))
    if _SPACED.search(folded):
        joined = re.sub(r"(?<=\b\w) (?=\w\b)", "", folded)
        out.append(("letter-spaced", _WS.sub(" ", joined)))
    if len(_LEET_WORD.findall(folded)) >= 2:
        out.append(("leetspeak", folded.translate(_LEET_FOLD)))
    if len(text) <= 2000 and len(_REVERSED_HINT.findall(folded[::-1].lower())) < len(
        _REVERSED_HINT.findall(folded.lower())
    ):
        out.append(("reversed", folded[::-1]))
    return out
