"""The English heuristics behind the path rules."""

from __future__ import annotations

import pytest

from heygen_conventions._naming import (
    is_plural,
    pluralize,
    singular_candidates,
    singularize,
    to_kebab,
    to_snake,
    words,
)

PLURALS = [
    "videos", "analytics", "statuses", "categories", "media", "data", "people", "menus",
    "analyses", "emojis", "settings", "news", "series", "addresses", "boxes", "schemas",
]  # fmt: skip
SINGULARS = [
    "video", "status", "category", "process", "analysis", "axis", "address", "bus", "alias",
    "canvas", "history", "me", "profile", "campus",
]  # fmt: skip


@pytest.mark.parametrize("word", PLURALS)
def test_plurals(word: str) -> None:
    assert is_plural(word)


@pytest.mark.parametrize("word", SINGULARS)
def test_singulars(word: str) -> None:
    assert not is_plural(word)


@pytest.mark.parametrize(
    ("singular", "plural"),
    [
        ("video", "videos"),
        ("status", "statuses"),
        ("category", "categories"),
        ("day", "days"),
        ("box", "boxes"),
        ("analysis", "analyses"),
        ("address", "addresses"),
        ("person", "persons"),  # no irregular plurals are invented; the fix hint stays readable
    ],
)
def test_pluralize_and_back(singular: str, plural: str) -> None:
    assert pluralize(singular) == plural
    assert pluralize(plural) == plural
    assert singular in singular_candidates(plural)


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("videos", "video"),
        ("statuses", "status"),
        ("categories", "category"),
        ("movies", "movie"),
        ("people", "person"),
        ("houses", "house"),
        ("media", "media"),
        ("me", "me"),
    ],
)
def test_singularize(plural: str, singular: str) -> None:
    assert singularize(plural) == singular
    assert singular in singular_candidates(plural)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("getVideos", ["get", "videos"]),
        ("get_videos", ["get", "videos"]),
        ("get-videos", ["get", "videos"]),
        ("getHTTPStatus", ["get", "http", "status"]),
        ("itemsPerPage", ["items", "per", "page"]),
        ("v1", ["v1"]),
    ],
)
def test_words(name: str, expected: list[str]) -> None:
    assert words(name) == expected
    assert to_snake(name) == "_".join(expected)
    assert to_kebab(name) == "-".join(expected)
