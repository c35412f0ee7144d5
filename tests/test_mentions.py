"""@name mention syntax: what is a mention, what is text, what is an error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refstudio.errors import MentionError
from refstudio.prompts.mentions import Mention, parse_mentions, prompt_to_send, scan, unescape


def names(text: str) -> list[tuple[str, str | None]]:
    return [(m.name, m.label) for m in parse_mentions(text)]


def test_simple_mentions_with_offsets() -> None:
    text = "@mara in @tavern at night"
    assert parse_mentions(text) == [
        Mention("mara", None, 0, 5, "@mara"),
        Mention("tavern", None, 9, 16, "@tavern"),
    ]
    for m in parse_mentions(text):
        assert text[m.start : m.end] == m.raw


def test_name_is_longest_word_run_and_stops_at_punctuation() -> None:
    assert names("hi @mara, @tavern. (@old_inn) @Hero2!") == [
        ("mara", None),
        ("tavern", None),
        ("old_inn", None),
        ("Hero2", None),
    ]
    assert names("@mara-chan") == [("mara", None)]


def test_label() -> None:
    text = "@mara:side-2 waves"
    [m] = parse_mentions(text)
    assert (m.name, m.label, m.raw) == ("mara", "side-2", "@mara:side-2")
    assert prompt_to_send(text) == "@mara waves"


def test_colon_without_label_is_text() -> None:
    assert names("@mara: hello") == [("mara", None)]
    assert prompt_to_send("@mara: hello") == "@mara: hello"
    assert prompt_to_send("@mara:") == "@mara:"
    assert names("@mara:side:more") == [("mara", "side")]


def test_escape_is_literal_at() -> None:
    assert parse_mentions("@@mara") == []
    assert prompt_to_send("@@mara and @@") == "@mara and @"
    # "@@" then a real mention
    assert names("@@@mara") == [("mara", None)]
    assert prompt_to_send("@@@mara") == "@@mara"


def test_at_after_word_char_is_text() -> None:
    for text in ("me@example.com", "x_@mara", "josé@mail.com", "2@mara"):
        assert parse_mentions(text) == [], text
        assert prompt_to_send(text) == text


def test_at_followed_by_non_letter_is_text() -> None:
    for text in ("@ 5pm", "@1st", "@!", "end @", "@_x", "@.mara", "@é"):
        assert parse_mentions(text) == [], text
        assert prompt_to_send(text) == text


@pytest.mark.parametrize(
    ("text", "start", "snippet"),
    [
        ("hi @ab there", 3, "'@ab'"),
        ("x @abcdefghijklmnopq", 2, "'@abcdefghijklmnopq'"),
        ("@José", 0, "'é' cannot be part of a name"),
        ("ok\n  @mara:" + "a" * 33, 5, "labels are 1-32"),
        ("@mara:sidé", 0, "labels are 1-32"),
    ],
)
def test_malformed_mentions(text: str, start: int, snippet: str) -> None:
    with pytest.raises(MentionError) as info:
        parse_mentions(text, source="hero.j2")
    err = info.value
    assert "malformed mention" in str(err)
    assert snippet in str(err)
    assert err.position == start
    assert err.line == text.count("\n", 0, start) + 1
    assert err.source == "hero.j2"
    assert err.hint is not None and "@@" in err.hint


def test_length_limits_are_inclusive() -> None:
    assert names("@abc @" + "a" * 16) == [("abc", None), ("a" * 16, None)]
    assert names("@mara:" + "b" * 32) == [("mara", "b" * 32)]


def test_error_line_number() -> None:
    with pytest.raises(MentionError) as info:
        parse_mentions("one\ntwo\nthree @xy")
    assert info.value.line == 3
    assert info.value.position == 14


def test_unescape() -> None:
    assert unescape("a @@ b @@@ c") == "a @ b @@ c"
    assert unescape("no at") == "no at"


def test_scan_returns_both() -> None:
    assert scan("@Mara:front hi @@x") == (
        [Mention("Mara", "front", 0, 11, "@Mara:front")],
        "@Mara hi @x",
    )


@given(st.text())
def test_parse_never_crashes(text: str) -> None:
    try:
        mentions, _sent = scan(text)
    except MentionError as err:
        assert err.position is not None and 0 <= err.position < len(text)
        assert text[err.position] == "@"
        return
    for m in mentions:
        assert text[m.start : m.end] == m.raw
        assert m.raw.startswith("@" + m.name)


@given(st.text().filter(lambda t: "@" not in t))
def test_text_without_at_is_unchanged(text: str) -> None:
    assert parse_mentions(text) == []
    assert prompt_to_send(text) == text
    assert unescape(text) == text


_plain = st.text(alphabet=st.characters(blacklist_characters="@"), max_size=20)


@given(_plain, _plain)
def test_escaped_at_is_always_text(before: str, after: str) -> None:
    text = before + "@@" + after
    assert parse_mentions(text) == []
    assert prompt_to_send(text) == before + "@" + after


@given(
    # a local part ends with a letter or digit ("x.@y" is not an address)
    st.from_regex(r"[a-z0-9]([a-z0-9._]{0,9}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{2,15}", fullmatch=True),
)
def test_emails_are_text(user: str, domain: str) -> None:
    text = f"write to {user}@{domain}.com today"
    assert parse_mentions(text) == []
    assert prompt_to_send(text) == text


@given(st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{2,15}", fullmatch=True), max_size=5))
def test_valid_names_are_found(found: list[str]) -> None:
    text = " and ".join("@" + n for n in found)
    assert [m.name for m in parse_mentions(text)] == found
    assert prompt_to_send(text) == text
