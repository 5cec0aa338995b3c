"""`normalise_spoken`: spoken digits, Whisper's digit groups and spoken e-mail addresses."""

from __future__ import annotations

import pytest

from polyfuse.guard.readers.spoken import NormalisedText, Word, normalise_spoken


def words(text: str, step: float = 0.3) -> list[Word]:
    """Hand-made words, ``step`` seconds each; ``|`` is a 0.5 s pause."""
    out: list[Word] = []
    t = 0.0
    for tok in text.split(" "):
        if tok == "|":
            t += 0.5
            continue
        out.append(Word(tok, t, t + step))
        t += step
    return out


def whisper(*texts: str) -> list[Word]:
    """Words as Whisper writes them (leading space or glued punctuation), 0.3 s each."""
    return [Word(x, 0.3 * i, 0.3 * i + 0.3) for i, x in enumerate(texts)]


def norm(text: str) -> str:
    return normalise_spoken(words(text)).text


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        (
            "my ssn is two one nine oh nine one nine three seven thanks",
            "my ssn is 219-09-1937 thanks",
        ),
        ("two one nine | zero nine | one nine three seven", "219 09 1937"),
        ("call four one five | five five five | oh one three two now", "call 415 555 0132 now"),
        ("call four one five five five five oh one three two", "call 415-555-0132"),
        ("one eight hundred five five five oh one three two", "1-800-555-0132"),
        (
            "four five three nine | one four eight eight | oh three four three | "
            "six four six seven",
            "4539 1488 0343 6467",
        ),
        ("four one one one one one one one one one one one one one one one", "4111 1111 1111 1111"),
        ("number is oh seven seven double five one two", "number is 0775512"),
        ("triple nine", "999"),
        ("twenty three and nineteen", "23 and nineteen"),
        ("five hundred twenty three", "523"),
        ("it is two dash one", "it is 21"),
        ("eight hundred five and six", "805 and six"),
        ("four , one , five", "415"),
    ],
)
def test_spoken_numbers_become_digits(spoken: str, written: str) -> None:
    assert norm(spoken) == written


@pytest.mark.parametrize(
    "text",
    [
        "I have one dog",
        "twenty people came",
        "oh , one more thing",
        "oh no",
        "double you",
        "I am at home today",
        "we met at noon dot",
    ],
)
def test_ordinary_words_stay(text: str) -> None:
    assert norm(text) == text.replace(" ,", ",")


@pytest.mark.parametrize(
    ("texts", "written"),
    [
        ((" My", " SSN", " is", " 219", "-09", "-1937."), "My SSN is 219-09-1937."),
        ((" is", " 2", "-1", "-9", "-0", "-9", "-1", "-9", "-3", "-7."), "is 219-09-1937."),
        ((" card", " 4", ",539", ",1", ",488", ",034", ",36", ",467"), "card 4539 1488 0343 6467"),
        ((" card", " 4111", " 1111", " 1111", " 1111."), "card 4111 1111 1111 1111."),
        ((" call", " 415", "-555", "-0132."), "call 415-555-0132."),
        ((" is", " 219091937."), "is 219-09-1937."),
        ((" is", " 531", "-428870"), "is 531-42-8870"),
        ((" zip", " 94107", "-1234"), "zip 94107-1234"),
        ((" call", " 020", " 7946", " 0958"), "call 020 7946 0958"),
        ((" it's", " 3.5", " percent"), "it's 3.5 percent"),
        ((" in", " 1937"), "in 1937"),
        # groups listed with a comma and a space are the speaker's, not thousands
        ((" to", " 699,", " 956,", " 915."), "to 699 956 915."),
        ((" at", " 78,", " 651,", " 450"), "at 78 651 450"),
        ((" at", " 78,651,450"), "at 78651450"),
        ((" is", " 460,", " 89,", " 9847"), "is 460 89 9847"),
    ],
)
def test_whisper_digit_groups(texts: tuple[str, ...], written: str) -> None:
    assert normalise_spoken(whisper(*texts)).text == written


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        (
            "email me at john dot smith at example dot com please",
            "email me at john.smith@example.com please",
        ),
        ("mail jane underscore doe at mail dot co dot uk", "mail jane_doe@mail.co.uk"),
        ("write to bob at example dot org", "write to bob@example.org"),
        ("bob at example dot invalidtld", "bob at example dot invalidtld"),
        ("bob at example", "bob at example"),
    ],
)
def test_spoken_emails(spoken: str, written: str) -> None:
    assert norm(spoken) == written


def test_whisper_written_email_parts_are_joined() -> None:
    got = normalise_spoken(
        whisper(" e", "-mail", " me", " at", " john", ".smith", " at", " example", ".com")
    )
    assert got.text == "e-mail me at john.smith@example.com"
    untouched = normalise_spoken(whisper(" mail", " john.smith@example.com."))
    assert untouched.text == "mail john.smith@example.com."


def test_every_character_maps_to_its_word() -> None:
    ws = words("ssn two one nine | zero nine | one nine three seven end")
    nt = normalise_spoken(ws)
    assert nt.text == "ssn 219 09 1937 end"
    assert len(nt.char_words) == len(nt.text)
    start = nt.text.index("219")
    span = (start, start + len("219 09 1937"))
    assert nt.words_of(span) == list(range(1, 10))
    assert nt.seconds_of(span) == (ws[1].start, ws[9].end)
    assert nt.seconds_of((0, 3)) == (ws[0].start, ws[0].end)
    # "nine" alone -> its own word's time
    assert nt.seconds_of((start + 2, start + 3)) == (ws[3].start, ws[3].end)


def test_email_span_maps_to_the_spoken_words() -> None:
    ws = words("mail john dot smith at example dot com now")
    nt = normalise_spoken(ws)
    s = nt.text.index("john")
    e = s + len("john.smith@example.com")
    assert nt.text[s:e] == "john.smith@example.com"
    assert nt.seconds_of((s, e)) == (ws[1].start, ws[7].end)
    at = nt.text.index("@")
    assert nt.words_of((at, at + 1)) == [4]


def test_spans_of_spaces_and_empty_transcripts() -> None:
    nt = normalise_spoken(words("hello world"))
    assert nt.seconds_of((5, 6)) == (0.0, 0.3)  # the space: nearest word before
    assert nt.seconds_of((-5, 100)) == (0.0, 0.6)
    empty = normalise_spoken([])
    assert empty == NormalisedText("", (), ())
    assert empty.seconds_of((0, 3)) == (0.0, 0.0)


def test_words_with_empty_text_are_kept_in_the_map() -> None:
    nt = normalise_spoken([Word("", 0.0, 0.1), Word(" one", 0.1, 0.2), Word(" two", 0.2, 0.3)])
    assert nt.text == "12"
    assert nt.words_of((0, 2)) == [1, 2]


def test_number_glued_to_an_abbreviation_is_split_from_it() -> None:
    words = [Word(" for", 0.0, 0.3), Word(" CC4288", 0.3, 1.0), Word(" 4716", 1.0, 1.5)]
    out = normalise_spoken(words)
    assert out.text == "for CC 4288 4716"
    assert out.seconds_of((7, 16)) == (0.3, 1.5)
    assert normalise_spoken([Word(" COVID", 0.0, 0.5), Word("-19", 0.5, 0.9)]).text == "COVID-19"
    after = [Word(" call", 0.0, 0.3), Word(" 1-984-182-0190mobile", 0.3, 2.0)]
    assert normalise_spoken(after).text == "call 1-984-182-0190 mobile"
    assert normalise_spoken([Word(" the", 0.0, 0.2), Word(" 1990s", 0.2, 0.8)]).text == "the 1990s"


# --- homophone repair inside digit runs and spelled addresses ---------------------------------


@pytest.mark.parametrize(
    ("heard", "written"),
    [
        # what Whisper base writes for eSpeak's digit words, inside digit runs
        ("Phone Nero 49 Nero 754 Nero 812", "Phone 04907540812"),
        ("my card 6586108-I'm 84332171 was lost", "my card 6586 1089 8433 2171 was lost"),
        ("number is 30 to 88610434735.", "number is 30288610434735."),
        ("Phone, 467, Free 395, Email", "Phone, 4673395, Email"),
        ("card 6586108-I’m 84332171 lost", "card 6586 1089 8433 2171 lost"),  # curly apostrophe
        ("SSN 0.5.4.28.6.117.", "SSN 054-28-6117."),
        # real voices' digits listed one by one, "eight" heard as the letter A
        ("Here is my SSN. A-A-2-A-52732", "Here is my SSN. 882-85-2732"),
        ("Here is my SN. A.A. 2. A. 5. 2. 7. 3.", "Here is my SN. 88285273."),
        ("Here is my SN. A.A. 2. A.5. 273.", "Here is my SN. 88285273."),
        ("Here is my SN. A, A, 2, A, 52732,", "Here is my SN. 882-85-2732,"),
        ("items a, 1, 2, 3", "items a, 123"),  # too short a listing: "a" stays
        ("card 4111-eh-1111-1111-111 ok", "card 4111 8111 1111 1111 ok"),
        ("v A.12345.6", "v A.12345.6"),
        # everyday words next to numbers stay as said
        ("from 9 to 5 daily", "from 9 to 5 daily"),
        ("call 555 a 1234 now", "call 555 a 1234 now"),  # "a" only in a listing
        ("a 5 6 7 8 9 0 1", "a 5678901"),
        ("I got an A. 2. 3. Then", "I got an A. 2. 3. Then"),  # too short a listing
        ("grade A-1-2-3 sauce", "grade A-123 sauce"),
        ("A-A-A-A-1-2-3", "A-A-A-A-123"),  # more letters than digits
        ("hosts 192.168.1.20 and 10.0.0.1", "hosts 192.168.1.20 and 10.0.0.1"),
        ("toll free 800 555 1212", "toll free 800 555 1212"),
        ("I paid for 3 tickets", "I paid for 3 tickets"),
        ("Nero was emperor", "Nero was emperor"),
        # "zero" heard as "Nero" or "hero" in a chain of single digits (issue 19)
        (
            "Office Backslash, Nero 7-7, Nero Nero, Nero 6-3, 9-6-6-Facts",
            "Office Backslash, 07700063966-Facts",
        ),
        ("I have a hero, 3 heroes 92 heroes, 2 heroes, 593", "I have a 03092020593"),
        ("my hero 2 is here", "my hero 2 is here"),  # no chain of seven digits
        ("heroes 1 2 3 4 5 6", "0123456"),
        ("a hero, 4 heroes, 5 heroes, 6 heroes", "a hero, 4 heroes, 5 heroes, 6 heroes"),
        (
            "price 3.5 dollars, version 1.2.3, host 10.0.0.1",
            "price 3.5 dollars, version 1.2.3, host 10.0.0.1",
        ),
    ],
)
def test_digit_homophones_are_repaired_only_inside_digit_runs(heard: str, written: str) -> None:
    assert norm(heard) == written


@pytest.mark.parametrize(
    ("heard", "written"),
    [
        ("my email is john and example not calm please", "my email is john@example.com please"),
        ("write to anna at mail not com", "write to anna@mail.com"),
        ("visit example dot com today", "visit example.com today"),
        ("email I'm right not calm.", "email I'm right.com."),
        # Whisper's comma for the pause before "dot"
        ("email is made up, not calm, is it", "email is made up.com, is it"),
        # not an address: no known ending, or an everyday "not"
        ("I am not in the office", "I am not in the office"),
        ("it is not us", "it is not us"),
        ("tom and jerry not here", "tom and jerry not here"),
        ("He said no. It was", "He said no. It was"),
    ],
)
def test_address_homophones_are_repaired_only_in_spelled_addresses(
    heard: str, written: str
) -> None:
    assert norm(heard) == written


def test_repaired_words_keep_their_times() -> None:
    heard = words("call 467 free 395 now")
    out = normalise_spoken(heard)
    start = out.text.index("4673395")
    assert out.seconds_of((start, start + 7)) == (heard[1].start, heard[3].end)
