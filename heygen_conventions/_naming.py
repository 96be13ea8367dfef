"""English word heuristics the convention checker uses on paths and names.

They decide whether a path segment is a plural noun, which singular a
collection's id parameter should be named after, and whether a segment starts
with a verb the HTTP method already says. They are heuristics: they err towards
accepting a word, so that a well-named API passes.
"""

from __future__ import annotations

import re

__all__ = [
    "CRUD_VERBS",
    "is_kebab_or_snake",
    "is_plural",
    "is_snake_case",
    "leading_verb",
    "pluralize",
    "singular_candidates",
    "singularize",
    "to_kebab",
    "to_snake",
    "words",
]

# Verbs that restate the HTTP method: `GET /getVideos`, `POST /createVideo`.
# Action verbs such as `process`, `publish` or `read` name a sub-resource that
# a POST triggers (`POST /videos/{video_id}/process`) and are fine.
CRUD_VERBS = frozenset(
    {
        "add",
        "create",
        "del",
        "delete",
        "destroy",
        "edit",
        "fetch",
        "get",
        "insert",
        "list",
        "modify",
        "patch",
        "post",
        "put",
        "remove",
        "retrieve",
        "save",
        "set",
        "update",
        "upsert",
    }
)

# A verb and a particle make a noun (`add-ons`, `set-ups`); so do a few verb-led compounds.
_PARTICLES = frozenset({"in", "ins", "off", "offs", "on", "ons", "out", "outs", "up", "ups"})
_VERB_LED_NOUNS = frozenset(
    {("patch", "note"), ("patch", "notes"), ("post", "mortem"), ("post", "mortems")}
)


def leading_verb(parts: list[str]) -> str | None:
    """The CRUD verb a segment's words start with (`get`, `videos` -> get), if any."""
    if not parts or parts[0] not in CRUD_VERBS:
        return None
    if len(parts) > 1 and (parts[1] in _PARTICLES or (parts[0], parts[1]) in _VERB_LED_NOUNS):
        return None
    return parts[0]


# Plurals that do not end in "s", and nouns that name a collection as they are.
_PLURAL_AS_IS = frozenset(
    {
        "aircraft",
        "alumni",
        "audio",
        "cacti",
        "children",
        "content",
        "criteria",
        "data",
        "deer",
        "equipment",
        "feedback",
        "feet",
        "fish",
        "fungi",
        "geese",
        "hardware",
        "indices",
        "information",
        "matrices",
        "media",
        "men",
        "metadata",
        "mice",
        "music",
        "oxen",
        "people",
        "phenomena",
        "radii",
        "sheep",
        "software",
        "staff",
        "teeth",
        "traffic",
        "vertices",
        "women",
    }
)
# Singular nouns that end in "s" without the endings handled below.
_SINGULAR_WITH_S = frozenset({"alias", "atlas", "bias", "canvas", "gas", "lens", "plus", "yes"})
# Plurals ending in "us", an ending that is otherwise singular (status, bus, campus).
_PLURAL_IN_US = frozenset({"emus", "gurus", "haikus", "menus", "tutus"})

# Plurals of nouns ending in "ie", which `-ies -> -y` would get wrong.
_PLURAL_OF_IE = frozenset({"calories", "cookies", "movies", "selfies", "zombies"})

_IRREGULAR_SINGULARS = {
    "children": "child",
    "criteria": "criterion",
    "feet": "foot",
    "geese": "goose",
    "indices": "index",
    "matrices": "matrix",
    "men": "man",
    "mice": "mouse",
    "people": "person",
    "phenomena": "phenomenon",
    "teeth": "tooth",
    "vertices": "vertex",
    "women": "woman",
}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[-_.\s]+")
_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_KEBAB_OR_SNAKE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


def words(name: str) -> list[str]:
    """Lower-case words of a name in any case style: `getHTTPStatus` -> get, http, status."""
    spaced = _CAMEL_BOUNDARY.sub(" ", name)
    return [w.lower() for w in _SEPARATORS.split(spaced) if w]


def to_snake(name: str) -> str:
    return "_".join(words(name))


def to_kebab(name: str) -> str:
    return "-".join(words(name))


def is_snake_case(name: str) -> bool:
    return _SNAKE.fullmatch(name) is not None


def is_kebab_or_snake(segment: str) -> bool:
    return _KEBAB_OR_SNAKE.fullmatch(segment) is not None


def is_plural(word: str) -> bool:
    """Whether ``word`` (one lower-case word) reads as a plural or collective noun."""
    if word in _PLURAL_AS_IS:
        return True
    if not word.endswith("s") or word in _SINGULAR_WITH_S:
        return False
    if word.endswith("ss"):  # class, address, access, process
        return False
    if word.endswith("us"):  # status, bus, campus, corpus
        return word in _PLURAL_IN_US
    # analysis, basis, axis; plurals such as "emojis" and "taxis" stay plural
    return not word.endswith(("sis", "xis"))


def pluralize(word: str) -> str:
    if is_plural(word):
        return word
    for singular_end, plural_end in (("sis", "ses"), ("us", "uses"), ("ss", "sses")):
        if word.endswith(singular_end):
            return word[: -len(singular_end)] + plural_end
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def singular_candidates(word: str) -> set[str]:
    """Every singular that ``word`` may be the plural of, plus ``word`` itself.

    English cannot be undone by rule (`houses` -> `house` but `statuses` ->
    `status`), so the checker accepts a parameter named after any candidate.
    """
    candidates = {word}
    if word in _IRREGULAR_SINGULARS:
        candidates.add(_IRREGULAR_SINGULARS[word])
    if word.endswith("s") and len(word) > 1:
        candidates.add(word[:-1])
    if word.endswith("es") and len(word) > 2:
        candidates.add(word[:-2])
    if word.endswith("ies") and len(word) > 3:
        candidates.add(word[:-3] + "y")
    if word.endswith("ves") and len(word) > 3:
        candidates.update({word[:-3] + "f", word[:-3] + "fe"})
    if word.endswith("ses") and len(word) > 3:
        candidates.add(word[:-2] + "is")  # analyses -> analysis
    if word.endswith("zzes") and len(word) > 4:
        candidates.add(word[:-3])  # quizzes -> quiz
    return candidates


def singularize(word: str) -> str:
    """The most likely singular of ``word``, for fix hints (`videos` -> `video`)."""
    if word in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[word]
    if not is_plural(word) or word in _PLURAL_AS_IS:
        return word
    if word.endswith("ies") and len(word) > 4 and word not in _PLURAL_OF_IE:
        return word[:-3] + "y"
    if word.endswith("uses"):
        # statuses, buses -> status, bus; houses, causes -> house, cause
        return word[:-1] if len(word) == 4 or word[-5] in "aeiou" else word[:-2]
    if word.endswith("zzes") and len(word) > 4:
        return word[:-3]  # quizzes -> quiz (fizzes -> fizz is rarer)
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    return word[:-1]
