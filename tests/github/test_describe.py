from __future__ import annotations

import pytest

from app.statuses.describe import fit_description, format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45.4, "45s"), (83, "1m 23s"), (600, "10m 0s"), (3723, "1h 2m 3s")],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_description_is_one_printable_line() -> None:
    assert fit_description("step 3\n\x1b[31mfailed\x1b[0m\twith\r\n 2") == (
        "step 3 [31mfailed [0m with 2"
    )


def test_a_description_of_exactly_the_limit_is_kept_whole() -> None:
    assert fit_description("é" * 140) == "é" * 140


def test_a_longer_description_is_cut_to_the_limit_with_an_ellipsis() -> None:
    cut = fit_description("word " * 100)
    assert len(cut) == 140
    assert cut.endswith("word…")


def test_a_cut_never_leaves_a_combining_mark_on_the_ellipsis() -> None:
    # "e" + COMBINING ACUTE ACCENT at positions 137-138: the cut at 139 ends on the accent.
    text = "a" * 137 + "e\u0301" + "tail"
    cut = fit_description(text)
    assert len(cut) <= 140
    assert cut.endswith("e…")
    assert "\u0301" not in cut
