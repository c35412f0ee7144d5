"""Prompt text per binding style: tag models get @names as written, order models "image N"."""

from __future__ import annotations

import pytest
from test_resolve import DictLookup, image, record

from refstudio.errors import ParameterError, TooFewReferencesError, TooManyReferencesError
from refstudio.models import catalog
from refstudio.prompts.binding import check_form, text_for_model
from refstudio.prompts.resolve import resolve

GEN4, NANO, KONTEXT = (catalog.get(a) for a in ("gen4", "nano-banana", "kontext-multi"))


@pytest.fixture
def lookup() -> DictLookup:
    return DictLookup([record(f"ref{i:02d}", image(i)) for i in range(1, 12)]
                      + [record("Mara", image(50, "side", primary=True)),
                         record("tavern", image(60))])


def test_tag_models_keep_the_text_as_written(lookup: DictLookup) -> None:
    resolved = resolve("@mara:side in @tavern, mail me@example.com @@home", lookup, model=GEN4)
    assert text_for_model(resolved, GEN4) == "@Mara in @tavern, mail me@example.com @home"


def test_order_models_refer_to_images_by_position(lookup: DictLookup) -> None:
    resolved = resolve("@tavern at night; @mara:side enters @tavern, @@home", lookup,
                       model=NANO)
    assert [b.name for b in resolved.bindings] == ["tavern", "Mara"]
    assert text_for_model(resolved, NANO) == (
        "tavern (image 1) at night; Mara (image 2) enters tavern, @home")
    assert text_for_model(resolved, NANO, order_form="image {n} ({name}, {label})") == (
        "image 1 (tavern, ) at night; image 2 (Mara, side) enters tavern, @home")


def test_no_mentions_leave_the_text_alone(lookup: DictLookup) -> None:
    resolved = resolve("a quiet @@ harbour", lookup, model=GEN4)
    assert text_for_model(resolved, NANO) == "a quiet @ harbour"


@pytest.mark.parametrize("form", ["{name}", "image {k}", "{n", "@{name} {n}"])
def test_a_bad_order_form_is_refused(form: str) -> None:
    with pytest.raises(ParameterError, match="order form"):
        check_form(form)


def test_each_model_takes_as_many_references_as_it_says(lookup: DictLookup) -> None:
    ten = " ".join(f"@ref{i:02d}" for i in range(1, 11))
    assert len(resolve(ten, lookup, model=NANO).bindings) == 10
    with pytest.raises(TooManyReferencesError, match=r"kontext-multi .* takes at most 5"):
        resolve(ten, lookup, model=KONTEXT)
    with pytest.raises(TooManyReferencesError, match=r"gen4 .* takes at most 3"):
        resolve("@ref01 @ref02 @ref03 @ref04", lookup, model=GEN4)
    with pytest.raises(TooManyReferencesError, match="takes at most 10"):
        resolve(ten + " @ref11", lookup, model=NANO)
    with pytest.raises(TooFewReferencesError, match="needs at least 1"):
        resolve("a castle", lookup, model=KONTEXT)
