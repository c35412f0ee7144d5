"""Resolving @mentions against a reference library (an in-memory lookup here)."""

from __future__ import annotations

import pytest

from refstudio.errors import MentionError, TooManyReferencesError
from refstudio.prompts.resolve import RefImage, RefRecord, ResolvedPrompt, resolve
from refstudio.providers.base import BoundImage


def image(image_id: int, label: str | None = None, primary: bool = False) -> RefImage:
    return RefImage(image_id, label, primary, f"{image_id:064x}", f"media/{image_id}.png", 64, 64)


class DictLookup:
    """The smallest ReferenceLookup: a dict keyed by lower-case name; counts calls."""

    def __init__(self, records: list[RefRecord]) -> None:
        self.records = {r.name.lower(): r for r in records}
        self.all_names_calls = 0
        self.find_calls = 0

    def find(self, name: str) -> RefRecord | None:
        self.find_calls += 1
        return self.records.get(name.lower())

    def all_names(self) -> list[str]:
        self.all_names_calls += 1
        return [r.name for r in self.records.values()]


def record(name: str, *images: RefImage) -> RefRecord:
    return RefRecord(name, "character", f"{name} desc", ("tag",), tuple(images))


@pytest.fixture
def lookup() -> DictLookup:
    return DictLookup(
        [
            record("Mara", image(1, "front"), image(2, "side", primary=True), image(3)),
            record("tavern", image(10, "day", primary=True), image(11, "night")),
            record("sword", image(20)),
            record("horse", image(30, primary=True)),
            record("empty"),
        ]
    )


def test_plain_text(lookup: DictLookup) -> None:
    assert resolve("a calm sea, me@x.com @@mara", lookup) == ResolvedPrompt(
        "a calm sea, me@x.com @@mara", "a calm sea, me@x.com @mara", ()
    )
    assert lookup.find_calls == 0


def test_binds_primary_in_first_mention_order(lookup: DictLookup) -> None:
    r = resolve("@tavern interior, @mara sits", lookup)
    assert [(b.name, b.label, b.image.image_id) for b in r.bindings] == [
        ("tavern", None, 10),
        ("Mara", None, 2),
    ]
    assert r.bindings[1].positions == (18,)
    # names spelled as stored, so @tag in the text equals the tag sent with the image
    assert r.text_to_send == "@tavern interior, @Mara sits"
    assert lookup.all_names_calls == 0


def test_first_image_when_none_is_primary(lookup: DictLookup) -> None:
    [b] = resolve("@sword", lookup).bindings
    assert b.image.image_id == 20


def test_label_case_insensitive_and_stripped_from_sent_text(lookup: DictLookup) -> None:
    r = resolve("@MARA:Front by @tavern:night.", lookup)
    assert [(b.name, b.label, b.image.image_id) for b in r.bindings] == [
        ("Mara", "Front", 1),
        ("tavern", "night", 11),
    ]
    assert r.text_to_send == "@Mara by @tavern."


def test_same_reference_twice_binds_once(lookup: DictLookup) -> None:
    r = resolve("@mara and @Mara and @mara:side", lookup)  # side is the primary image
    [b] = r.bindings
    assert b.image.image_id == 2
    assert b.positions == (0, 10, 20)
    assert r.text_to_send == "@Mara and @Mara and @Mara"


def test_two_images_of_one_reference(lookup: DictLookup) -> None:
    text = "@mara looks at\n@mara:front"
    with pytest.raises(MentionError) as info:
        resolve(text, lookup, source="scene.j2")
    err = info.value
    assert "@mara and @mara:front" in str(err)
    assert "one image per prompt" in str(err)
    assert (err.position, err.line, err.source) == (15, 2, "scene.j2")


def test_unknown_name_suggests(lookup: DictLookup) -> None:
    with pytest.raises(MentionError) as info:
        resolve("@tavern then @marra", lookup)
    err = info.value
    assert "unknown reference @marra" in str(err)
    assert err.hint == "did you mean @Mara?"
    assert err.position == 13
    assert lookup.all_names_calls == 1


def test_unknown_name_without_suggestion(lookup: DictLookup) -> None:
    with pytest.raises(MentionError) as info:
        resolve("@zzzzzz", lookup)
    assert "did you mean" not in (info.value.hint or "")


def test_unknown_label_lists_labels(lookup: DictLookup) -> None:
    with pytest.raises(MentionError) as info:
        resolve("x @tavern:dusk", lookup)
    err = info.value
    assert "no image labelled 'dusk'" in str(err)
    assert "day, night" in str(err)
    assert err.position == 2


def test_label_on_reference_without_labels(lookup: DictLookup) -> None:
    with pytest.raises(MentionError, match="none of its images has a label"):
        resolve("@sword:blade", lookup)


def test_reference_without_images(lookup: DictLookup) -> None:
    with pytest.raises(MentionError, match="@empty has no images") as info:
        resolve("an @empty room", lookup)
    assert info.value.position == 3


def test_too_many_references_names_all(lookup: DictLookup) -> None:
    text = "@mara @tavern @sword\n@horse and @mara"
    with pytest.raises(TooManyReferencesError) as info:
        resolve(text, lookup)
    err = info.value
    assert "4 references (@Mara, @tavern, @sword, @horse)" in str(err)
    assert "at most 3" in str(err)
    assert (err.position, err.line) == (21, 2)


def test_exactly_three_is_fine(lookup: DictLookup) -> None:
    assert len(resolve("@mara @tavern @sword @MARA", lookup).bindings) == 3


def test_malformed_mention_propagates(lookup: DictLookup) -> None:
    with pytest.raises(MentionError, match="malformed"):
        resolve("@ma", lookup)


def test_bound_images(lookup: DictLookup) -> None:
    r = resolve("@tavern @mara", lookup)
    assert r.bound_images(lambda img: f"https://cdn/{img.sha256[-2:]}") == [
        BoundImage("tavern", "https://cdn/0a"),
        BoundImage("Mara", "https://cdn/02"),
    ]
