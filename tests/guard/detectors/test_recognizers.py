"""Validated pattern recognizers: checksums, validity rules, spans, and negatives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyfuse.guard.detectors.recognizers import (
    RECOGNIZERS,
    find_all,
    find_credit_cards,
    find_dates_of_birth,
    find_driver_licenses,
    find_emails,
    find_heard,
    find_ibans,
    find_ip_addresses,
    find_passports,
    find_phone_numbers,
    find_secrets,
    find_ssns,
    iban_valid,
    luhn_valid,
    normalise_email,
    shannon_entropy,
    ssn_valid,
)


def spans(matches: list, text: str) -> list[str]:
    return [text[m.start : m.end] for m in matches]


# ------------------------------------------------------------------ checksums


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),
        ("4111 1111 1111 1111", True),
        ("5500-0000-0000-0004", True),
        ("378282246310005", True),
        ("4111111111111112", False),
        ("378282246310006", False),
        ("", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
@settings(max_examples=50, deadline=None)
def test_luhn_check_digit_and_single_digit_errors(body: str) -> None:
    number = _with_check_digit(body)
    assert luhn_valid(number)
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not luhn_valid(wrong)


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("gb82west12345698765432", True),
        ("GB82WEST12345698765431", False),  # checksum
        ("GB82WEST1234569876543", False),  # too short for GB
        ("XX82WEST12345698765432", False),  # unknown country
        ("DE89370400440532013001", False),
    ],
)
def test_iban_valid(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("536-22-1234", True),
        ("023-01-0866", True),
        ("000-12-3456", False),
        ("666-12-3456", False),
        ("912-12-3456", False),
        ("536-00-1234", False),
        ("536-22-0000", False),
        ("123-45-6789", False),  # well-known sample
        ("078-05-1120", False),
    ],
)
def test_ssn_valid(ssn: str, valid: bool) -> None:
    assert ssn_valid(*ssn.split("-")) is valid


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)


# ------------------------------------------------------------------ credit cards


@pytest.mark.parametrize(
    "card", ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"]
)
def test_credit_card_found_with_span(card: str) -> None:
    text = f"Charge my card {card} please."
    (m,) = find_credit_cards(text)
    assert (m.start, m.end, m.type) == (15, 15 + len(card), "CREDIT_CARD")
    assert m.score >= 0.85
    assert "Luhn" in m.explanation


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "card 0000 0000 0000 0000",  # one repeated digit
        "order 12345678",  # too short
        "card 41111111111111111111111",  # too long
        "version 4111.1111.1111.1111",  # dots are not card separators
    ],
)
def test_credit_card_negatives(text: str) -> None:
    assert find_credit_cards(text) == []


def test_credit_card_run_with_extra_group() -> None:
    text = "card 4111 1111 1111 1111 2024"
    (m,) = find_credit_cards(text)
    assert text[m.start : m.end] == "4111 1111 1111 1111"


def test_twelve_digit_card_needs_card_words() -> None:
    assert spans(find_credit_cards("card number 630427373398"), "card number 630427373398") == [
        "630427373398"
    ]
    assert find_credit_cards("order 630427373398 shipped") == []


# ------------------------------------------------------------------ SSN


@pytest.mark.parametrize("ssn", ["536-22-1234", "536 22 1234", "536.22.1234", "536221234"])
def test_ssn_formats_with_context(ssn: str) -> None:
    text = f"My SSN is {ssn}."
    (m,) = find_ssns(text)
    assert text[m.start : m.end] == ssn
    assert m.score >= 0.85


def test_ssn_bare_digits_without_context_score_low() -> None:
    (m,) = find_ssns("ref 536221234")
    assert m.score < 0.4


def test_ssn_shape_after_phone_words_ranks_below_a_phone_number() -> None:
    (m,) = find_ssns("please call me at 699-95-6915")
    assert m.score < 0.5
    (kept,) = find_ssns("my SSN is 699-95-6915, call me")
    assert kept.score >= 0.85


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-12-3456",
        "SSN 666-12-3456",
        "SSN 912-12-3456",
        "SSN 536-00-1234",
        "SSN 536-22-0000",
        "SSN 123-45-6789",
        "SSN 536-22 1234",  # inconsistent separators
        "SSN 1536-22-1234",
    ],
)
def test_ssn_negatives(text: str) -> None:
    assert find_ssns(text) == []


# ------------------------------------------------------------------ IBAN


@pytest.mark.parametrize(
    "iban", ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "gb82west12345698765432"]
)
def test_iban_found(iban: str) -> None:
    text = f"My IBAN is {iban}, thanks"
    (m,) = find_ibans(text)
    assert (text[m.start : m.end], m.type) == (iban, "IBAN_CODE")


def test_iban_does_not_take_trailing_words() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00 BIC COBADEFFXXX"
    (m,) = find_ibans(text)
    assert text[m.start : m.end] == "DE89 3704 0044 0532 0130 00"


@pytest.mark.parametrize(
    "text",
    ["IBAN GB82WEST12345698765431", "IBAN GB82WEST1234569876543", "IBAN GB82WEST123456987654321"],
)
def test_iban_negatives(text: str) -> None:
    assert find_ibans(text) == []


# ------------------------------------------------------------------ phone numbers


@pytest.mark.parametrize(
    "phone", ["212-555-0147", "(212) 555-0147", "+1 212 555 0147", "+44 20 7946 0958"]
)
def test_phone_found(phone: str) -> None:
    text = f"Call me at {phone} tomorrow"
    (m,) = find_phone_numbers(text)
    assert (text[m.start : m.end], m.type) == (phone, "PHONE_NUMBER")


def test_phone_fallback_needs_phone_words() -> None:
    text = "Phone: 467 3395"
    assert spans(find_phone_numbers(text), text) == ["467 3395"]
    assert find_phone_numbers("Invoice 467 3395 is paid") == []
    assert find_phone_numbers("Phone: 467 3395", fallback=False) == []


def test_phone_negatives() -> None:
    assert find_phone_numbers("The meeting is at 2003-08-28 in room 12") == []
    assert find_phone_numbers("We'll meet at 3369 24 Clarke Avenue") == []


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("Call +44 20 7946 0958 ext. 12 today", "+44 20 7946 0958 ext. 12"),
        ("From Germany dial 0044 20 7946 0958", "0044 20 7946 0958"),
        ("From the US: 011 44 20 7946 0958", "011 44 20 7946 0958"),
        ("Her desk is +46 (0)8 928 571 38.", "+46 (0)8 928 571 38"),
        ("Reach me at 212-555-0147 x52646", "212-555-0147 x52646"),
        ("Tel. 01 42 68 53 00 (Paris office)", "01 42 68 53 00"),
        ("Her number is 9469 9966.", "9469 9966"),
        ("Our support line is 030 901820", "030 901820"),
    ],
)
def test_phone_international_extensions_and_grouped(text: str, phone: str) -> None:
    assert spans(find_phone_numbers(text), text) == [phone]


def test_phone_regions_decide_which_national_plans_are_read() -> None:
    text = "Call the Stockholm office: 08-123 456 78"
    assert spans(find_phone_numbers(text, ["US", "SE"]), text) == ["08-123 456 78"]
    assert spans(find_phone_numbers(text, ["US"], fallback=False), text) == []
    # another region's national number needs phone words; the home region's does not
    assert find_phone_numbers("Bring 08-123 456 78 along", ["US", "SE"]) == []
    assert spans(find_phone_numbers("Bring 212-555-0147 along", ["US"]), "Bring 212-555-0147 along")


@pytest.mark.parametrize(
    "text",
    [
        "Please call us about order 4821 7733.",
        "Your order #2125550147 has shipped.",
        "Tracking number: 4155 5501 2345",
        "When you phone, have your account number 020 7946 0958 ready.",
        "The access code is 73575598.",
        "Scan 2125 5501 47 at the till.",  # valid US digits, grouped as no one dials them
        "Total: $1,234,567.89 on 2024-03-15, version 10.0.19045.3803, ZIP 94103-1234",
    ],
)
def test_phone_not_found_in_other_numbers(text: str) -> None:
    assert find_phone_numbers(text) == []


# ------------------------------------------------------------------ e-mail


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.smith@example.com today", "john.smith@example.com"),
        ("it is john dot smith at example dot com ok", "john dot smith at example dot com"),
        ("email me: jane at example dot org", "jane at example dot org"),
        ("jane [at] example [dot] org", "jane [at] example [dot] org"),
        ("reach bob underscore lee at gmail dot com", "bob underscore lee at gmail dot com"),
    ],
)
def test_email_found_over_written_form(text: str, expected: str) -> None:
    (m,) = find_emails(text)
    assert text[m.start : m.end] == expected


@pytest.mark.parametrize(
    "text",
    [
        "I looked at the dot com bubble",
        "meet me at noon dot com",
        "not an email: john@",
        "john@localhost",
        "at example dot xyzzy",
    ],
)
def test_email_negatives(text: str) -> None:
    assert find_emails(text) == []


def test_normalise_email() -> None:
    assert normalise_email("John Dot Smith AT example dot com") == "John.Smith@example.com"


# ------------------------------------------------------------------ IP addresses


@pytest.mark.parametrize(
    "ip", ["192.168.0.1", "8.8.8.8", "2001:db8::1", "fe80::1ff:fe23:4567:890a"]
)
def test_ip_found(ip: str) -> None:
    text = f"connect from {ip} now"
    (m,) = find_ip_addresses(text)
    assert text[m.start : m.end] == ip


@pytest.mark.parametrize(
    "text", ["ip 999.1.1.1", "ip 192.168.01.1", "at 10:30:00", "version 1.2.3.4.5", "ip ::"]
)
def test_ip_negatives(text: str) -> None:
    assert find_ip_addresses(text) == []


# ------------------------------------------------------------------ dates of birth


@pytest.mark.parametrize(
    "date", ["03/12/1985", "1985-03-12", "March 12, 1985", "12th of March 1985", "12 Mar 1985"]
)
def test_dob_found_near_birth_words(date: str) -> None:
    text = f"I was born on {date} in Ohio"
    (m,) = find_dates_of_birth(text)
    assert text[m.start : m.end] == date


@pytest.mark.parametrize(
    "text",
    [
        "The meeting is on 03/12/1985",  # no birth words
        "DOB 02/30/1985",  # no such day
        "DOB 13/13/1985",
        "born on 01/01/2999",  # future
    ],
)
def test_dob_negatives(text: str) -> None:
    assert find_dates_of_birth(text) == []


# ------------------------------------------------------------------ licences and passports


def test_driver_license_near_context() -> None:
    text = "My driver's license number is F162823540116."
    (m,) = find_driver_licenses(text)
    assert text[m.start : m.end] == "F162823540116"
    assert find_driver_licenses("Order F162823540116 shipped") == []


def test_passport_near_context() -> None:
    text = "passport no. C03005988"
    (m,) = find_passports(text)
    assert text[m.start : m.end] == "C03005988"
    assert find_passports("tracking C03005988") == []


# ------------------------------------------------------------------ secrets


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx1234",
        "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-1234567890-abcdefghijkl",
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    ],
)
def test_known_secret_prefixes(secret: str) -> None:
    text = f"use {secret} here"
    (m,) = find_secrets(text)
    assert (text[m.start : m.end], m.score) == (secret, 0.95)


def test_private_key_block() -> None:
    text = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    )
    (m,) = find_secrets(text)
    assert (m.start, m.end) == (0, len(text))


def test_high_entropy_token_needs_secret_words() -> None:
    token = "q8Zr2LmX0vTy7NwB4kHs"
    (m,) = find_secrets(f"the api key {token}")
    assert m.score == 0.7
    assert find_secrets(f"the order id {token}") == []
    assert find_secrets("the api key aaaaaaaaaaaaaaaaaaaa") == []  # low entropy
    assert find_secrets("website key http://www.FaceUpdate.com.br/") == []


def test_assigned_password() -> None:
    text = 'password = "Tr0ub4dor&3x"'
    (m,) = find_secrets(text)
    assert text[m.start : m.end] == "Tr0ub4dor&3x"


# ------------------------------------------------------------------ registry


def test_find_all_filters_and_sorts() -> None:
    text = "SSN 536-22-1234, card 4111 1111 1111 1111, mail a@b.com"
    assert [m.type for m in find_all(text)] == ["US_SSN", "CREDIT_CARD", "EMAIL_ADDRESS"]
    assert [m.type for m in find_all(text, ["EMAIL_ADDRESS"])] == ["EMAIL_ADDRESS"]
    assert set(RECOGNIZERS) >= {"US_SSN", "CREDIT_CARD", "SECRET"}


def test_plain_text_has_no_findings() -> None:
    text = "The quick brown fox jumps over the lazy dog on 3 occasions in 2021."
    assert find_all(text) == []


# ------------------------------------------------------------------ heard forms (speech)


@pytest.mark.parametrize(
    ("text", "etype", "value"),
    [
        ("What is the limit for card 4454 7451139 0933?", "CREDIT_CARD", "4454 7451139 0933"),
        ("My credit card $1586 1089 8433 2171 was lost", "CREDIT_CARD", "1586 1089 8433 2171"),
        ("Here's my SSN, 023 010866", "US_SSN", "023 010866"),
        ("They are not answering at 788 651 4509", "PHONE_NUMBER", "788 651 4509"),
        ("Can someone call me on 9472? 7916?", "PHONE_NUMBER", "9472? 7916"),
        ("on my email myonarrossetriter.com", "EMAIL_ADDRESS", "myonarrossetriter.com"),
    ],
)
def test_heard_forms_need_the_words_that_introduce_them(text: str, etype: str, value: str) -> None:
    (m,) = find_heard(text)
    assert (m.type, text[m.start : m.end]) == (etype, value)
    assert m.score <= 0.6 and m.rule == "polyfuse.heard"
    for words, other in (("credit card", "bill"), ("card", "thing"), ("SSN", "one")):
        text = text.replace(words, other)
    text = text.replace("email", "site").replace("answering at", "seeing").replace("call", "see")
    assert find_heard(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "My card ends in 4242",  # too few digits for a card
        "I paid 2024 dollars in 2023",
        "Order 1234567890123 shipped",  # long number, no card words
        "visit example.com for details",  # a domain without e-mail words
    ],
)
def test_heard_forms_negatives(text: str) -> None:
    assert find_heard(text) == []


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        # a misheard local part of several words before the domain (issue 19)
        ("on my email You got Corbygat, you're a pie.com!", "You got Corbygat, you're a pie.com"),
        # ".org" heard as "not or", digits in the local part
        (
            "Send the receipt to my email, link 11 at phone post not or not.",
            "link 11 at phone post not or",
        ),
        # "e-mail" heard as "mail"
        ("My mail address is made with not me, nothing.", "made with not me, nothing"),
        # a spoken ".us" heard as "not us", far after "e-mail"
        (
            "What's your email? You'll have to finish on that, and we're not us.",
            "You'll have to finish on that, and we're not us",
        ),
        # an announced address the recogniser could not spell
        (
            "You said your email is you and not yet made up, is that right?",
            "you and not yet made up",
        ),
    ],
)
def test_heard_addresses_after_e_mail_words(heard: str, said: str) -> None:
    (m,) = [m for m in find_heard(heard) if m.type == "EMAIL_ADDRESS"]
    assert heard[m.start : m.end] == said


def test_e_mail_as_a_verb_or_a_thing_announces_no_address() -> None:
    assert find_heard("I will email you tomorrow about it.") == []
    assert find_heard("The email is fine, thanks.") == []
    assert find_heard("My mail is late today.") == []


@pytest.mark.parametrize("words", ["SN", "S.S.N.", "SSN,", "social security number is"])
def test_heard_ssn_words_include_what_the_recogniser_writes_for_ssn(words: str) -> None:
    text = f"Here is my {words} 543-643-6789"
    (m,) = find_heard(text)
    assert m.type == "US_SSN" and text[m.start : m.end] == "543-643-6789"


def test_a_long_number_right_after_at_is_a_heard_phone_number() -> None:
    text = "They are not answering at 78651450."
    (m,) = find_heard(text)
    assert m.type == "PHONE_NUMBER" and text[m.start : m.end] == "78651450"
    assert find_heard("meet me at 1600 today") == []
    assert find_heard("it is not us, the email is fine") == []


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        # a contact record's numbers run together, a phone label right after them
        ("Pola 61487416003964160892857138 Fx, 1", "61487416003964160892857138"),
        ("BPO 51165781170456798883058 Facts, next", "51165781170456798883058"),
        ("Portugal 309. 171. 21. 253. 109. 821. Office X.", "309. 171. 21. 253. 109. 821"),
        ("Hines Box, 00015186400854 Mobile.", "00015186400854"),
        ("MAC-190-3140-4508-769-FACS, ok", "190-3140-4508-769"),
        # "fax" as heard before the number, a spoken "plus"
        ("Facts, 259-735-7502-459.", "259-735-7502-459"),
        ("Office Max, plus 447700288115 and", "447700288115"),
        # phone words before a run of several numbers
        ("Mobile, 03939216850964710795, and", "03939216850964710795"),
    ],
)
def test_heard_phone_numbers_next_to_phone_labels(heard: str, said: str) -> None:
    (m,) = find_heard(heard)
    assert m.type == "PHONE_NUMBER" and heard[m.start : m.end] == said


@pytest.mark.parametrize(
    "text",
    [
        "Pola 61487416003964160892857138 and more",  # a long run, no phone words
        "Invoice 12345678 office supplies",  # another kind of number
        "The plus 12 team",  # too few digits
        "Mobile, " + "1" * 50,  # longer than several numbers run together
    ],
)
def test_heard_phone_labels_negatives(text: str) -> None:
    assert find_heard(text) == []


def test_a_spoken_at_word_and_dot_after_e_mail_words_is_a_heard_address() -> None:
    heard = "Email, Shazn Sinker at QMAX, not the website"
    (m,) = find_heard(heard)
    assert m.type == "EMAIL_ADDRESS" and heard[m.start : m.end] == "Shazn Sinker at QMAX, not the"
    heard = "What's your email? Vincent, sit yo man, that flakens not who."  # ".hu"
    (m,) = find_heard(heard)
    assert heard[m.start : m.end] == "Vincent, sit yo man, that flakens not who"
    assert find_heard("I will email you at home, not the office") == []
    assert find_heard("Meet at noon, not the evening") == []


def test_an_ssn_heard_with_extra_digits_right_after_its_announcement() -> None:
    text = "My social security number is 497016168300."
    (m,) = find_heard(text)
    assert m.type == "US_SSN" and text[m.start : m.end] == "497016168300"
    assert find_heard("social security helps 12345678901 people") == []
    (m,) = find_heard("call the social security office at 18007721213")
    assert m.type == "PHONE_NUMBER"


@pytest.mark.parametrize(
    ("heard", "said"),
    [
        # "e-mail" heard as "my mail", ".org" as "not or"
        (
            "Send the receipt to my mail, make it not monotonous, not or not.",
            "make it not monotonous, not or",
        ),
        # "my mail address is" heard as "my main address is", with a spoken dot
        (
            "My main address is games, not more addresses, not all nodes.",
            "games, not more addresses, not all",
        ),
    ],
)
def test_heard_addresses_after_my_mail(heard: str, said: str) -> None:
    (m,) = find_heard(heard)
    assert m.type == "EMAIL_ADDRESS" and heard[m.start : m.end] == said
    assert find_heard("My main address is 12 High Street, London") == []
