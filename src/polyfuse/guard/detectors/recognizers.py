"""Validated pattern recognizers for text PII: pure Python, no models, no network.

Every recognizer takes a string and returns `Match` tuples ``(start, end, type, score,
explanation, rule)`` with character offsets into that string (end exclusive). A candidate
is only reported when it passes a real validity check (Luhn for card numbers, mod-97 and
the country length for IBANs, the SSA allocation rules for SSNs, the ``phonenumbers``
metadata for phone numbers, ``ipaddress`` for IP addresses, a calendar check for dates)
or, for formats with no checksum (driver licences, passports, secrets), when it sits near
the words that name it. The recognizers tolerate OCR/ASR-style text: digit groups split by
spaces (``4111 1111 1111 1111``, ``536 22 1234``) and spoken e-mail addresses
(``john dot smith at example dot com``).

`TextPII` (``polyfuse.guard.detectors.pii``) combines these with Presidio's NER; use `find_all`
to run them alone.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

#: Version of this rule set; reported as ``Finding.detector_version`` for these rules.
RULES_VERSION = "polyfuse-rules-1"


class Match(NamedTuple):
    """One validated match.

    Attributes:
        start: start offset in the text.
        end: end offset (exclusive).
        type: entity type, named like Presidio's (``CREDIT_CARD``, ``US_SSN`` ...).
        score: confidence in [0, 1].
        explanation: why it fired, for humans.
        rule: the rule's detector name (``polyfuse.luhn``, ``polyfuse.iban`` ...).
    """

    start: int
    end: int
    type: str
    score: float
    explanation: str
    rule: str


# --------------------------------------------------------------------------- helpers


def _context(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _near(
    text: str, start: int, end: int, words: re.Pattern[str], before: int = 48, after: int = 24
) -> bool:
    """Whether ``words`` occurs within ``before`` characters before the match or
    ``after`` characters after it."""
    return bool(words.search(text, max(0, start - before), start)) or bool(
        words.search(text, end, min(len(text), end + after))
    )


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def shannon_entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character (0 for an empty string)."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# --------------------------------------------------------------------------- credit cards


def luhn_valid(number: str) -> bool:
    """Whether the digits of ``number`` (separators ignored) pass the Luhn checksum."""
    digits = _digits(number)
    if not digits:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


#: Runs of digits where single spaces or dashes may separate the groups.
_DIGIT_RUN = re.compile(r"(?<![\w.,-])\d+(?:[ -]\d+)*(?![\w-]|[.,]\d)")
_CARD_CONTEXT = _context(r"\b(?:card|cc|visa|master\s*card|amex|maestro|credit|debit|payment)")
#: Issuer prefixes (IIN) of the major networks: Visa, Mastercard, Amex, Diners, Discover,
#: JCB, UnionPay, Maestro, UATP.
_CARD_PREFIX = re.compile(r"^(?:4|5[0-8]|2[2-7]|3[0-9]|6[0-9]|1)")


def _group_windows(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    """Sub-spans of a separated digit run made of whole groups, longest first."""
    groups = [(m.start() + start, m.end() + start) for m in re.finditer(r"\d+", text[start:end])]
    spans = [
        (groups[i][0], groups[j][1])
        for i in range(len(groups))
        for j in range(len(groups) - 1, i - 1, -1)
    ]
    return sorted(spans, key=lambda s: s[0] - s[1])


def find_credit_cards(text: str) -> list[Match]:
    """Card numbers: 13-19 digits (12 next to card words), optionally grouped by single
    spaces or dashes, passing the Luhn checksum and not one repeated digit.

    A run with extra groups (``card 4111 1111 1111 1111 2024``) is searched for its longest
    Luhn-valid run of whole groups.
    """
    out: list[Match] = []
    for m in _DIGIT_RUN.finditer(text):
        for s, e in _group_windows(text, m.start(), m.end()):
            if out and s < out[-1].end:
                continue
            digits = _digits(text[s:e])
            n = len(digits)
            if not 12 <= n <= 19 or len(set(digits)) == 1 or not luhn_valid(digits):
                continue
            context = _near(text, s, e, _CARD_CONTEXT)
            if n == 12 and not context:
                continue
            known = bool(_CARD_PREFIX.match(digits))
            score = 1.0 if known and n >= 13 else 0.85 if context else 0.6
            why = f"{n} digits, Luhn checksum valid" + (", card words nearby" if context else "")
            out.append(Match(s, e, "CREDIT_CARD", score, why, "polyfuse.luhn"))
            break
    return out


# --------------------------------------------------------------------------- US SSN

_SSN = re.compile(r"(?<![\w.,-])(\d{3})([- .]?)(\d{2})\2(\d{4})(?![\w-]|[.,]\d)")
_SSN_CONTEXT = _context(r"\b(?:ssn|ssns|social\s+security|social|security\s+number|ss\s*#|ss\s+no)")
#: Numbers published in advertising or examples; never issued to a person.
_SSN_SAMPLES = frozenset({"078051120", "219099999", "123456789", "111111111"})


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA allocation rules: area not 000, 666 or 9xx; group not 00; serial not 0000;
    and not a well-known sample number (078-05-1120, 219-09-9999, 123-45-6789)."""
    if (len(area), len(group), len(serial)) != (3, 2, 4):
        return False
    if not (area + group + serial).isdigit():
        return False
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_SAMPLES


def find_ssns(text: str) -> list[Match]:
    """US social security numbers ``AAA-GG-SSSS`` (dashes, spaces, dots or none, used
    consistently) that pass `ssn_valid`. Dashed numbers score 0.85; spaced, dotted or bare
    nine digits need SSN words nearby to reach that (bare digits alone score 0.3). After
    phone words with no SSN words nearby the score is 0.45, below a phone number's."""
    out: list[Match] = []
    for m in _SSN.finditer(text):
        area, sep, group, serial = m.groups()
        if not ssn_valid(area, group, serial):
            continue
        context = _near(text, m.start(), m.end(), _SSN_CONTEXT)
        if not context and _phone_context(text, m.start(), m.end()):
            score = 0.45  # "call me at 699-95-6915": phone words, no SSN words
        elif sep == "-":
            score = 0.85 if not context else 0.95
        elif context:
            score = 0.85
        else:
            score = 0.5 if sep == " " else 0.3
        why = "SSN area/group/serial valid" + (", SSN words nearby" if context else "")
        out.append(Match(m.start(), m.end(), "US_SSN", score, why, "polyfuse.ssn"))
    return out


# --------------------------------------------------------------------------- IBAN

#: IBAN length per country (ISO 13616 registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})(?=[ ]?[A-Za-z0-9])")


def iban_valid(value: str) -> bool:
    """Whether ``value`` (spaces ignored, any case) has its country's IBAN length and a
    valid ISO 7064 mod-97 check."""
    compact = value.replace(" ", "").upper()
    if not compact.isalnum() or not compact.isascii():
        return False
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    if not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def find_ibans(text: str) -> list[Match]:
    """IBANs, compact or in groups of four, upper or lower case: exactly the country's
    length of characters (extra trailing characters are not taken) with a valid mod-97
    check, ending at a word boundary or a group boundary."""
    out: list[Match] = []
    for m in _IBAN_START.finditer(text):
        if out and m.start() < out[-1].end:
            continue
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        taken, i, n = 0, m.start(), len(text)
        while i < n and taken < length:
            c = text[i]
            if c.isascii() and c.isalnum():
                taken += 1
            elif not (c == " " and i + 1 < n and text[i + 1].isalnum() and text[i - 1] != " "):
                break
            i += 1
        if taken != length or (i < n and text[i].isascii() and text[i].isalnum()):
            continue
        if not iban_valid(text[m.start() : i]):
            continue
        out.append(
            Match(m.start(), i, "IBAN_CODE", 1.0, "IBAN length and mod-97 valid", "polyfuse.iban")
        )
    return out


# --------------------------------------------------------------------------- phone numbers

#: Regions whose numbering plans `find_phone_numbers` reads national numbers with when no
#: policy says otherwise (``pii.phone_regions``); the first is the home region.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "IE", "AU", "IN",
)  # fmt: skip
_PHONE_CONTEXT = _context(
    r"\b(?:phone|tel|telephone|mobile|cell|call|fax|desk|contact|reach|whatsapp|sms|"
    r"text\s+(?:me|us|to)|dial|ring|answering|messages?\s+(?:to|on)|(?:help|hot|support)\s*line|"
    r"office\s*(?::|phone|number|line)|(?:my|his|her|your|our|their)\s+(?:registered\s+)?number)"
)
#: Words that name another kind of number: when one stands closer before a candidate
#: than any phone word, the candidate is that number (order, invoice, tracking ...).
_OTHER_NUMBER = _context(
    r"\b(?:order|invoice|inv|tracking|track|shipment|parcel|package|booking|reservation|"
    r"confirmation|reference|ref|account|acct|customer|member|employee|patient|record|case|"
    r"ticket|claim|policy|serial|sku|item|isbn|zip|postcode|postal|access\s+code|code|pin|"
    r"password|passcode|id)\W*(?:number|no\.?|num|#|is|:)?\W*$"
)
#: Words that mark a number as a phone number when they directly follow it.
_PHONE_AFTER = _context(r"^\W{0,3}(?:office|fax|mobile|cell|desk|phone|home|work|tel)\b")
#: Phone-shaped digit groups: optional +country, optional (area) or (0), groups of
#: digits (one run of up to 12) split by single spaces, dots or dashes, optional extension.
_PHONE_SHAPE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,12}(?:[ .-]\d{1,6}){0,5}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w]|[.-]\d)"
)
_ISO_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
_PHONE_WORD = _context(r"\b(?:office|fax|mobile|cell|desk|phone|home|work|tel)\b")
_IDD = re.compile(r"(?<![\w+])0(?:0|11)[ -]?[1-9]")
#: International dialling: ``+``, or an international prefix (``00``, ``011``) then the
#: country code.
_DIALLED_ABROAD = re.compile(r"\s*(?:\+|00|011)\s*(?P<rest>\d+)")


def unknown_phone_regions(regions: Iterable[str]) -> list[str]:
    """The codes in ``regions`` that name no numbering plan ``phonenumbers`` knows."""
    import phonenumbers

    return [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]


def _phone_cue(text: str, start: int, end: int) -> str | None:
    """``"phone"`` when phone words name the number (before it, or right after it),
    ``"other"`` when words of another kind of number stand closer before it, else None."""
    window = text[max(0, start - 32) : start]
    phone = [m.end() for m in _PHONE_CONTEXT.finditer(window)]
    other = _OTHER_NUMBER.search(window)
    if other is not None and (not phone or other.start() >= phone[-1]):
        return "other"
    if phone or _PHONE_AFTER.search(text[end : end + 16]):
        return "phone"
    return None


def _phone_context(text: str, start: int, end: int) -> bool:
    return _phone_cue(text, start, end) == "phone"


def _international(raw: str, country_code: int | None) -> bool:
    """Whether ``raw`` is written with its country code (``+44 ...``, ``0044 ...``)."""
    m = _DIALLED_ABROAD.match(raw)
    return m is not None and m.group("rest").startswith(str(country_code or "-"))


def _grouped_as_dialled(raw: str, region: str) -> bool:
    """Whether ``raw`` is one number grouped as its region writes it (or not grouped)."""
    import phonenumbers

    strict = phonenumbers.Leniency.STRICT_GROUPING
    return any(
        m.start == 0 and m.end == len(raw)
        for m in phonenumbers.PhoneNumberMatcher(raw, region, leniency=strict)
    )


def find_phone_numbers(
    text: str,
    regions: Iterable[str] = DEFAULT_PHONE_REGIONS,
    *,
    fallback: bool = True,
) -> list[Match]:
    """Phone numbers found by ``phonenumbers.PhoneNumberMatcher`` and valid by its
    metadata: written with their country code (``+44 20 7946 0958``, ``0044 ...``,
    ``011 44 ...``, ``+46 (0)8 ...``), or national numbers of ``regions`` (the first is
    the home region), extensions included (``x52646``, ``ext. 12``).

    International numbers and home-region numbers score 0.75 (0.9 next to phone words);
    numbers that only parse as another region's national number need phone words
    (score 0.9). A home-region number without phone words must be grouped as the region
    writes it (``212-555-0147``, ``2125550147``; not ``2125 5501 47``). A number preceded
    by the words of another kind of number (order, invoice, tracking, account, access
    code, ID ...) closer than any phone word is not reported unless written with its
    country code.
    With ``fallback``, phone-shaped numbers of 7-15 digits that the metadata rejects
    (unknown or fictional ranges, local numbers without an area code, grouped digits
    such as ``9469 9966``) are still reported with score 0.55 when phone words (phone,
    mobile, fax, office, call, my number ...) directly precede or follow them.
    """
    import phonenumbers

    out: list[Match] = []

    def free(s: int, e: int) -> bool:
        return not any(s < o.end and o.start < e for o in out)

    regions = list(regions)
    # another region's numbers count only after phone words or dialled with 00 / 011:
    # without either in the text, one pass with the home region is enough
    hint = _PHONE_CONTEXT.search(text) or _PHONE_WORD.search(text) or _IDD.search(text)
    for i, reg in enumerate(regions if hint else regions[:1]):
        for pm in phonenumbers.PhoneNumberMatcher(text, reg):
            s, e = pm.start, pm.end
            if not free(s, e):
                continue
            cue = _phone_cue(text, s, e)
            intl = _international(pm.raw_string, pm.number.country_code)
            if not intl and (cue == "other" or (i > 0 and cue is None)):
                continue  # another kind of number, or a foreign national one without words
            if not intl and cue is None and not _grouped_as_dialled(pm.raw_string, reg):
                continue  # "951 983 177 7": valid digits, but no one groups a number so
            score = min(1.0, 0.75 + (0.15 if cue == "phone" else 0.0))
            where = phonenumbers.region_code_for_number(pm.number) or reg
            why = f"valid phone number for {where}" + (", phone words nearby" if cue else "")
            out.append(Match(s, e, "PHONE_NUMBER", score, why, "polyfuse.phonenumbers"))
    if fallback:
        for m in _PHONE_SHAPE.finditer(text):
            s, e = m.start(), m.end()
            digits = len(_digits(re.split(r"\s?(?:x|ext)", m.group(0))[0]))
            if not 7 <= digits <= 15 or not free(s, e) or _ISO_DATE.fullmatch(m.group(0)):
                continue
            if not _phone_context(text, s, e):
                continue
            why = "phone-shaped number next to phone words (not in the numbering plan)"
            out.append(Match(s, e, "PHONE_NUMBER", 0.55, why, "polyfuse.phone_context"))
    return sorted(out)


# --------------------------------------------------------------------------- e-mail

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
_WORD = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_DOT = r"(?:\.|\s+dot\s+|\s*[\(\[]dot[\)\]]\s*)"
_LOCAL_SEP = r"(?:[._]|\s+(?:dot|underscore|dash|hyphen)\s+|\s*[\(\[]dot[\)\]]\s*)"
_AT = r"(?:\s*@\s*|\s+at\s+|\s*[\(\[]at[\)\]]\s*)"
_SPOKEN_EMAIL = re.compile(
    rf"(?<![\w.@])(?P<local>{_WORD}(?:{_LOCAL_SEP}{_WORD})*)(?P<at>{_AT})"
    rf"(?P<domain>{_WORD}(?:{_DOT}{_WORD})*{_DOT}(?P<tld>[A-Za-z]{{2,24}}))(?![\w@])",
    re.IGNORECASE,
)
_EMAIL_CONTEXT = _context(r"(?:e-?mail|mail|address|contact|write|reach|send)")
#: Mail providers that make a spoken address plausible without e-mail words nearby.
_MAIL_PROVIDERS = frozenset(
    [
        "gmail",
        "googlemail",
        "yahoo",
        "outlook",
        "hotmail",
        "live",
        "msn",
        "icloud",
        "me",
        "aol",
        "proton",
        "protonmail",
        "gmx",
        "web",
        "mail",
        "yandex",
        "zoho",
        "fastmail",
    ]
)
#: Top-level domains accepted for spoken addresses ("... at example dot com"), where a
#: free-form word would make too many false positives.
_SPOKEN_TLDS = frozenset(
    [
        "com",
        "org",
        "net",
        "edu",
        "gov",
        "mil",
        "io",
        "co",
        "uk",
        "de",
        "fr",
        "it",
        "es",
        "nl",
        "be",
        "ch",
        "at",
        "se",
        "no",
        "dk",
        "fi",
        "pl",
        "ru",
        "us",
        "ca",
        "au",
        "nz",
        "in",
        "jp",
        "cn",
        "br",
        "mx",
        "ie",
        "pt",
        "info",
        "biz",
        "me",
        "ai",
        "app",
        "dev",
        "email",
        "mail",
        "online",
    ]
)
_SPOKEN_MAP = (
    (re.compile(r"\s*[\(\[]?\b(?:dot)\b[\)\]]?\s*", re.I), "."),
    (re.compile(r"\s*[\(\[]?\bat\b[\)\]]?\s*", re.I), "@"),
    (re.compile(r"\s+underscore\s+", re.I), "_"),
    (re.compile(r"\s+(?:dash|hyphen)\s+", re.I), "-"),
    (re.compile(r"\s*([.@_])\s*"), r"\1"),
)


def normalise_email(spoken: str) -> str:
    """``john dot smith at example dot com`` -> ``john.smith@example.com``."""
    out = spoken
    for pattern, repl in _SPOKEN_MAP:
        out = pattern.sub(repl, out)
    return out


def find_emails(text: str) -> list[Match]:
    """E-mail addresses, written (score 1.0) or spoken / obfuscated (``john dot smith at
    example dot com``, ``jane [at] example [dot] org``; score 0.8) when the normalised
    form is a valid address with a common top-level domain and looks like an address
    rather than a sentence (e-mail words nearby, a dotted local part, a mail provider, a
    bracketed or written ``@``). The span covers the text as written."""
    out = [
        Match(m.start(), m.end(), "EMAIL_ADDRESS", 1.0, "e-mail address", "polyfuse.email")
        for m in _EMAIL.finditer(text)
    ]
    pos = 0
    while (m := _SPOKEN_EMAIL.search(text, pos)) is not None:
        # a rejected candidate ("me at john dot smith") may hide a real one starting later
        # ("john dot smith at example dot com"): resume at the next word, not its end
        nxt = re.search(r"\s\S", text[m.start() : m.end()])
        pos = m.start() + nxt.end() - 1 if nxt else m.end()
        if any(m.start() < o.end and o.start < m.end() for o in out):
            continue
        raw = m.group(0)
        spoken = not ("@" in m.group("at") and "." in m.group("domain") and " " not in raw)
        if not spoken or m.group("tld").lower() not in _SPOKEN_TLDS:
            continue
        normal = normalise_email(raw)
        if not _EMAIL.fullmatch(normal):
            continue
        local, domain = normal.split("@", 1)
        plausible = (
            _near(text, m.start(), m.end(), _EMAIL_CONTEXT, before=40, after=8)
            or any(c in local for c in "._-+")
            or any(c.isdigit() for c in local)
            or domain.count(".") >= 2
            or domain.split(".")[0].lower() in _MAIL_PROVIDERS
            or "@" in raw
            or "[" in raw
            or "(" in raw
        )
        if not plausible:
            continue
        why = "spoken/obfuscated e-mail address, normalises to a valid address"
        out.append(Match(m.start(), m.end(), "EMAIL_ADDRESS", 0.8, why, "polyfuse.email"))
        pos = m.end()
    return sorted(out)


# --------------------------------------------------------------------------- IP addresses

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})"
    r"(?:%[0-9A-Za-z]+)?(?![\w:])"
)
_IP_CONTEXT = _context(r"\b(?:ip|ipv4|ipv6|address|host|server|client|from|connect)")


def find_ip_addresses(text: str) -> list[Match]:
    """IPv4 and IPv6 addresses that the ``ipaddress`` module accepts (no leading zeros in
    IPv4 octets; ``::`` alone is not reported)."""
    out: list[Match] = []
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        context = _near(text, m.start(), m.end(), _IP_CONTEXT)
        score = 0.9 if context else 0.75
        out.append(
            Match(m.start(), m.end(), "IP_ADDRESS", score, "valid IPv4 address", "polyfuse.ip")
        )
    for m in _IPV6.finditer(text):
        value = m.group(0)
        if value.strip(":") == "" or sum(c.isalnum() for c in value) < 2:
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        if any(m.start() < o.end and o.start < m.end() for o in out):
            continue
        out.append(
            Match(m.start(), m.end(), "IP_ADDRESS", 0.9, "valid IPv6 address", "polyfuse.ip")
        )
    return sorted(out)


# --------------------------------------------------------------------------- date of birth

_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for m in names
}  # fmt: skip
_MONTH = r"(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4}|'?\d{2})"
_DATES = [
    re.compile(r"(?<![\d/.-])(?P<a>\d{1,2})(?P<s>[/.-])(?P<b>\d{1,2})(?P=s)(?P<year>\d{4}|\d{2})(?![\d/.-]|\.\d)"),
    re.compile(r"(?<![\d/.-])(?P<year>\d{4})(?P<s>[/.-])(?P<mm>\d{1,2})(?P=s)(?P<dd>\d{1,2})(?![\d/.-]|\.\d)"),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),
    re.compile(rf"\b{_DAY}(?:\s+of)?\s+{_MONTH},?\s+{_YEAR}\b", re.I),
]  # fmt: skip
_DOB_CONTEXT = _context(r"(?:\bborn\b|\bbirth|\bd\.?o\.?b\b|\bb\.\s*$|\bbday\b|\bage\b)")


def _year(value: str) -> int:
    y = int(value.lstrip("'"))
    if len(value.lstrip("'")) == 2:
        y += 1900 if y > _dt.date.today().year % 100 else 2000
    return y


def _parse_date(m: re.Match[str]) -> _dt.date | None:
    groups = m.groupdict()
    try:
        year = _year(groups["year"])
        if groups.get("mon"):
            month, day = _MONTHS[groups["mon"].lower().rstrip(".")], int(groups["day"])
            return _dt.date(year, month, day)
        if groups.get("mm"):
            return _dt.date(year, int(groups["mm"]), int(groups["dd"]))
        a, b = int(groups["a"]), int(groups["b"])
        for month, day in ((a, b), (b, a)):  # US month/day first, then day/month
            try:
                return _dt.date(year, month, day)
            except ValueError:
                continue
    except (ValueError, KeyError):
        return None
    return None


def find_dates_of_birth(text: str) -> list[Match]:
    """Calendar-valid dates in the past (``12/03/1985``, ``1985-03-12``, ``March 12, 1985``,
    ``12th of March 1985``) next to birth words (born, birth, DOB, birthday)."""
    out: list[Match] = []
    today = _dt.date.today()
    for pattern in _DATES:
        for m in pattern.finditer(text):
            if any(m.start() < o.end and o.start < m.end() for o in out):
                continue
            date = _parse_date(m)
            if date is None or not (today.year - 130 <= date.year and date <= today):
                continue
            if not _near(text, m.start(), m.end(), _DOB_CONTEXT, before=40, after=16):
                continue
            why = "valid past date next to birth words"
            out.append(Match(m.start(), m.end(), "DATE_OF_BIRTH", 0.85, why, "polyfuse.dob"))
    return sorted(out)


# --------------------------------------------------------------------------- licences, passports

_LICENSE = re.compile(
    r"(?<![\w-])(?:[A-Za-z]{1,2}[- ]?\d{4,14}|\d{7,12}|\d{3,4}-\d{2,3}-\d{3,4}"
    r"|[A-Za-z]\d{3}-\d{4}-\d{4})(?![\w-])"
)
_LICENSE_CONTEXT = _context(
    r"(?:driv(?:er|ers|er's|ing)\s+licen[cs]e|\bdl\b|\bd/l\b|licen[cs]e\s+(?:number|no|#)|"
    r"\blicen[cs]e\b)"
)
_DRIVING = _context(r"driv(?:er|ers|er's|ing)\s+licen[cs]e")
_PASSPORT = re.compile(r"(?<![\w-])(?:[A-Za-z]\d{8}|\d{9})(?![\w-])")
_PASSPORT_CONTEXT = _context(r"\bpassport")


def find_driver_licenses(text: str) -> list[Match]:
    """US driver licence numbers: the common state formats (a letter or two then 4-14
    digits, 7-12 digits, dashed groups) within a few words of "driver's license" / "DL"."""
    out: list[Match] = []
    for m in _LICENSE.finditer(text):
        if not _near(text, m.start(), m.end(), _LICENSE_CONTEXT, before=40, after=0):
            continue
        strong = _near(text, m.start(), m.end(), _DRIVING, before=40, after=0)
        why = "licence-number format next to driver's licence words"
        score = 0.95 if strong else 0.65
        out.append(Match(m.start(), m.end(), "US_DRIVER_LICENSE", score, why, "polyfuse.license"))
    return out


def find_passports(text: str) -> list[Match]:
    """US passport numbers (9 digits, or a letter and 8 digits for next-generation books)
    within a few words of "passport"."""
    out: list[Match] = []
    for m in _PASSPORT.finditer(text):
        if not _near(text, m.start(), m.end(), _PASSPORT_CONTEXT, before=40, after=0):
            continue
        why = "passport-number format next to the word passport"
        out.append(Match(m.start(), m.end(), "US_PASSPORT", 0.7, why, "polyfuse.passport"))
    return out


# --------------------------------------------------------------------------- secrets

#: Known credential formats: (pattern, what it is).
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----)?"
        ),
        "PEM private key",
    ),
    (re.compile(r"(?<![\w-])sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,}"), "sk- API key"),
    (re.compile(r"(?<!\w)(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"), "Stripe API key"),
    (re.compile(r"(?<!\w)gh[pousr]_[A-Za-z0-9]{30,}"), "GitHub token"),
    (re.compile(r"(?<!\w)github_pat_[A-Za-z0-9_]{22,}"), "GitHub fine-grained token"),
    (re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"), "AWS access key id"),
    (re.compile(r"(?<![\w-])xox[abposr]-[A-Za-z0-9-]{10,}"), "Slack token"),
    (re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}"), "Google API key"),
    (re.compile(r"(?<![\w-])glpat-[A-Za-z0-9_-]{20,}"), "GitLab token"),
    (re.compile(r"(?<![\w-])eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{10,}"), "JSON web token"),
)  # fmt: skip
_SECRET_CONTEXT = _context(
    r"\b(?:key|token|secret|password|passwd|pwd|credentials?|bearer|auth\w*|api)\b|_key\b"
)
_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_=.-]{16,}(?![\w+/=-])")
_ASSIGNED = re.compile(
    r"(?:password|passwd|pwd|secret|token|api[_ -]?key|access[_ -]?key)\w*[\"']?"
    r"\s*(?:[:=]|\bis\b)\s*[\"']?"
    r"(?P<value>[^\s\"',;]{8,})",
    re.IGNORECASE,
)  # fmt: skip


def _looks_random(token: str, min_entropy: float) -> bool:
    kinds = (str.islower, str.isupper, str.isdigit)
    classes = sum(any(kind(c) for c in token) for kind in kinds)
    return classes >= 2 and shannon_entropy(token) >= min_entropy


def find_secrets(text: str) -> list[Match]:
    """API keys and secrets: known formats (``sk-``, ``ghp_``, ``AKIA``, ``xoxb-``,
    ``AIza``, PEM private keys ...; score 0.95), values assigned to password/secret/token
    names that look random (score 0.8), and tokens of 16+ characters with high Shannon
    entropy (>= 3.5 bits/char, mixed character classes) near key/token/secret/password
    words (score 0.7)."""
    out: list[Match] = []

    def free(s: int, e: int) -> bool:
        return not any(s < o.end and o.start < e for o in out)

    for pattern, what in SECRET_PATTERNS:
        for m in pattern.finditer(text):
            if free(m.start(), m.end()):
                out.append(Match(m.start(), m.end(), "SECRET", 0.95, what, "polyfuse.secret"))
    for m in _ASSIGNED.finditer(text):
        value = m.group("value")
        if free(m.start("value"), m.end("value")) and _looks_random(value, 2.5):
            bits = shannon_entropy(value)
            why = f"random-looking value assigned to a secret name ({bits:.1f} bits/char)"
            out.append(
                Match(m.start("value"), m.end("value"), "SECRET", 0.8, why, "polyfuse.secret")
            )
    for m in _TOKEN.finditer(text):
        token = m.group(0).strip(".")
        s = m.start() + m.group(0).index(token) if token else m.start()
        e = s + len(token)
        if len(token) < 16 or not free(s, e) or not _looks_random(token, 3.5):
            continue
        if "//" in token or token.lower().startswith("www.") or _EMAIL.fullmatch(token):
            continue
        if token.replace("-", "").replace(".", "").isdigit():
            continue
        if not _near(text, s, e, _SECRET_CONTEXT, before=40, after=0):
            continue
        why = f"high-entropy token ({shannon_entropy(token):.1f} bits/char) near secret words"
        out.append(Match(s, e, "SECRET", 0.7, why, "polyfuse.secret"))
    return sorted(out)


# --------------------------------------------------------------------------- heard forms

#: A run of digits as a speech recogniser writes a misheard number: groups split by
#: spaces, dashes, dots or commas, or by the punctuation it writes for a pause
#: ("9472? 7916"), possibly with a currency sign in front ("$1586 1089").
_HEARD_RUN = re.compile(r"(?<![\w.])[$£€]?\d+(?:(?:[ .,-]|[,.?] )\d+)*(?!\w|-\d)")
#: SSN words as a recogniser writes them: also "SN" and "S.S.N." (heard rules only: in
#: typed text "SN" is a serial number).
_HEARD_SSN_CONTEXT = _context(
    r"\b(?:ssns?|sn|s\.\s?s\.\s?n\b|social|security\s+number|ss\s*#|ss\s+no)"
)
#: SSN words that directly announce the number ("my SSN is", "social security number:"):
#: right after them a number heard with one or two digits too many (11-12) is the SSN.
_HEARD_SSN_ANNOUNCED = _context(
    r"\b(?:ssn|s\.\s?s\.\s?n\.?|social\s+security\s+(?:number|no\.?))\W{0,3}(?:is\W{0,2})?$"
)
#: Words after which a transcript says an e-mail address ("e-mail", "my mail").
_HEARD_EMAIL_CONTEXT = _context(
    r"(?:\be-?\s?mail|\b(?:my|your|his|her|our)\s+mail)\b(?:\s+(?:address|is))*\W{1,3}"
    r"(?P<local>(?:[^\W_]+\W{1,3}){0,12})$"
)
#: A domain as a transcript writes it: "name.com", or a spoken ending with "dot" heard as
#: "not" ("and we're not us" for "teleworm.us", "not or" for ".org"; only after e-mail
#: words, see `find_heard`).
_HEARD_DOMAIN = re.compile(
    r"[\w.-]*\w\.[a-z]{2,24}\b"
    r"|\b(?:not|dot)\s+(?:com|org|or|net|edu|gov|info|biz|us|uk|de|fr|it|nl|se|hu|who|au|ca)\b",
    re.IGNORECASE,
)
#: A spoken "at", a word, and "dot" (or "not") before another word: the domain of an
#: address whose name and ending the recogniser did not spell ("at QMAX, not the" for
#: "at cuvox dot de"; only after e-mail words that are no verb, see `find_heard`).
_HEARD_AT_DOMAIN = re.compile(r"\bat\s+[^\W_]+,?\s+(?:not|dot)\s+[^\W_]{2,}\b", re.IGNORECASE)
#: "e-mail" as a verb: its object pronoun right after it ("I'll email you at home").
_EMAIL_VERB_OBJECT = re.compile(r"^(?:you|me|him|her|us|them|it)(?!['\w])", re.IGNORECASE)
#: "at" or a spoken "plus" (an international number's "+") right before a number: "reach
#: me at 78651450", "plus 447700288115" (heard rules: 7-15 digits).
_HEARD_AT = re.compile(r"\b(?:at|plus)\W{0,2}$", re.IGNORECASE)
#: "fax" as a recogniser writes it ("Facts", "FACS", "Fx"), before or after a number.
_HEARD_FAX = r"fax|facts|facs|fx"
_HEARD_PHONE_BEFORE = _context(rf"\b(?:{_HEARD_FAX})\b")
#: A phone label right after a number, as contact records write one ("416 60 039 office",
#: "07700 063 966-Fax"), "fax" also as heard.
_HEARD_PHONE_AFTER = _context(rf"^\W{{0,3}}(?:office|mobile|cell|desk|phone|tel|{_HEARD_FAX})\b")
#: Most digits of a heard phone finding: a recogniser runs a contact record's numbers
#: together ("51165781170456798883058 Facts" for a box number, an office and a fax
#: number), and the run is reported as one finding when phone words stand next to it.
HEARD_PHONE_RUN = 45
#: A phrase that announces an address ("my e-mail address is ...", "my mail address is" or
#: "my main address is" as a recogniser may write it), then up to six words
#: to the end of the sentence: the address, even when the recogniser could not spell it.
_HEARD_ANNOUNCED_EMAIL = _context(
    r"\b(?:(?:my|your|his|her|our)\s+(?:e-?\s?mail(?:\s+address)?|(?P<main>mai[ln])\s+address)"
    r"|the\s+e-?\s?mail\s+address)"
    r"\s+(?:is|was)\s+"
    r"(?P<said>[^\s.?!,]+(?:[ ,]+[^\s.?!,]+){0,5})"
)
#: A spoken "dot" (or "dot" heard as "not") in the words after "my main address is", the
#: recogniser's "my mail address is": a postal address has none.
_SPOKEN_DOT = _context(r"\b(?:dot|not)\b")


def find_heard(text: str) -> list[Match]:
    """Numbers and addresses in a speech transcript that the validated recognizers
    reject because the recogniser misheard them, found by the words that introduce them.

    Speech recognisers drop, double or swap digits ("4454 7451139 0933" for a 16-digit
    card) and merge a spoken "at" into the next word ("myelorossi atwriter.com"), so the
    checksums and shapes that keep text findings precise fail on speech even though the
    words around the number make its kind plain. This rule set reports, at lower scores:

    * ``CREDIT_CARD`` (0.6): 13-19 digits within a few words after card words;
    * ``US_SSN`` (0.6): 8-10 digits after SSN words, 11-12 right after words that
      announce it ("my social security number is"; digits heard twice);
    * ``PHONE_NUMBER`` (0.5): 7-15 digits after phone words ("fax" also as heard:
      "Facts", "Fx") or right after "at" or a spoken "plus", or right before a phone label
      ("office", "mobile", "fax" ...); a run of up to `HEARD_PHONE_RUN` digits next to
      phone words is a contact record's numbers run together and one finding;
    * ``EMAIL_ADDRESS`` (0.5): a domain-like token (``name.com``, or "not us" for a
      spoken ".us", "not who" for ".hu") at most twelve words after "e-mail" (a misheard
      local part runs to several words), a spoken "at", a word and "dot"/"not" there
      ("at QMAX, not the" for "at cuvox dot de"; not after "e-mail you"), and the words
      after "my e-mail (address) is" when nothing there was heard as an address ("my
      main address is" only with a spoken "dot" or "not" in them).

    Run it on transcripts only (`TextPII` does for ``source="asr"``): on typed text a
    checksum failure means the number is not what it claims to be.
    """
    out: list[Match] = []
    kinds = (
        ("CREDIT_CARD", "card", 13, 19, _CARD_CONTEXT, 0.6),
        ("US_SSN", "SSN", 8, 10, _HEARD_SSN_CONTEXT, 0.6),
        ("PHONE_NUMBER", "phone", 7, HEARD_PHONE_RUN, _PHONE_CONTEXT, 0.5),
    )
    for m in _HEARD_RUN.finditer(text):
        start = m.start() + (1 if m.group()[0] in "$£€" else 0)
        n = len(_digits(m.group()))
        for etype, label, lo, hi, words, score in kinds:
            before = max(0, start - 32)
            cue = etype == "PHONE_NUMBER" and (
                (n <= 15 and _HEARD_AT.search(text, max(0, start - 6), start))
                or _HEARD_PHONE_BEFORE.search(text, before, start)
                or (
                    _HEARD_PHONE_AFTER.search(text[m.end() : m.end() + 12])
                    and not _OTHER_NUMBER.search(text, before, start)
                )
            )
            if etype == "US_SSN" and n in (11, 12):  # doubled digits, right after SSN words
                if _HEARD_SSN_ANNOUNCED.search(text, max(0, start - 40), start):
                    why = f"{n} digits right after the words that announce an SSN in speech"
                    why += " (no checksum: recognisers mishear digits)"
                    out.append(Match(start, m.end(), etype, score, why, "polyfuse.heard"))
                    break
                continue
            if lo <= n <= hi and (cue or words.search(text, before, start)):
                why = f"{n} digits after {label} words in speech"
                why += " (no checksum: recognisers mishear digits)"
                out.append(Match(start, m.end(), etype, score, why, "polyfuse.heard"))
                break
    for m in _HEARD_DOMAIN.finditer(text):
        ctx = _HEARD_EMAIL_CONTEXT.search(text, max(0, m.start() - 80), m.start())
        if ctx is not None:  # the words between "e-mail" and the domain are the local part
            why = "an address-like word after 'e-mail' in speech (the 'at' was not heard)"
            start = ctx.start("local") if ctx.group("local") else m.start()
            out.append(Match(start, m.end(), "EMAIL_ADDRESS", 0.5, why, "polyfuse.heard"))
    for m in _HEARD_AT_DOMAIN.finditer(text):
        ctx = _HEARD_EMAIL_CONTEXT.search(text, max(0, m.start() - 80), m.start())
        local = ctx.group("local") if ctx is not None else ""
        if (
            ctx is None
            or _EMAIL_VERB_OBJECT.match(local)
            or any(
                x.type == "EMAIL_ADDRESS" and x.start < m.end() and m.start() < x.end for x in out
            )
        ):
            continue
        why = "a spoken 'at', a word and 'dot' after 'e-mail' in speech (a misheard domain)"
        start = ctx.start("local") if local else m.start()
        out.append(Match(start, m.end(), "EMAIL_ADDRESS", 0.5, why, "polyfuse.heard"))
    for m in _HEARD_ANNOUNCED_EMAIL.finditer(text):
        if m.group("main") == "main" and not _SPOKEN_DOT.search(m.group("said")):
            continue
        if not any(x.type == "EMAIL_ADDRESS" and x.end > m.start("said") for x in out):
            why = "the words after 'my e-mail address is' in speech (not heard as an address)"
            out.append(
                Match(m.start("said"), m.end("said"), "EMAIL_ADDRESS", 0.5, why, "polyfuse.heard")
            )
    return sorted(out)


# --------------------------------------------------------------------------- registry

#: Every recognizer by the entity type it reports.
RECOGNIZERS: dict[str, Callable[[str], list[Match]]] = {
    "CREDIT_CARD": find_credit_cards,
    "US_SSN": find_ssns,
    "IBAN_CODE": find_ibans,
    "PHONE_NUMBER": find_phone_numbers,
    "EMAIL_ADDRESS": find_emails,
    "IP_ADDRESS": find_ip_addresses,
    "DATE_OF_BIRTH": find_dates_of_birth,
    "US_DRIVER_LICENSE": find_driver_licenses,
    "US_PASSPORT": find_passports,
    "SECRET": find_secrets,
}


def find_all(
    text: str,
    entities: Iterable[str] | None = None,
    *,
    phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
) -> list[Match]:
    """Every recognizer's matches (of ``entities`` only, when given), sorted by start;
    overlaps between types are left for the caller to resolve. Phone numbers are read
    with the numbering plans of ``phone_regions`` (see `find_phone_numbers`)."""
    wanted = RECOGNIZERS if entities is None else [e for e in entities if e in RECOGNIZERS]
    out: list[Match] = []
    for etype in wanted:
        if etype == "PHONE_NUMBER":
            out += find_phone_numbers(text, phone_regions)
        else:
            out += RECOGNIZERS[etype](text)
    return sorted(out)
