"""Spelling tolerance: map query words no product holds to close, frequent catalog words.

A word any product holds is never changed (the caller says which words those are), so a query
the catalog can answer word for word is searched as typed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from rapidfuzz import fuzz, process

#: words shorter than this are left alone: "s7" → "s8" would change what the shopper asked for
MIN_WORD_LENGTH = 4
MIN_SIMILARITY = 75.0


def correct_terms(
    terms: list[str],
    vocabulary: Counter[str],
    known: Callable[[str], bool] | None = None,
) -> list[str] | None:
    """Return ``terms`` with misspelt words replaced, or ``None`` if nothing could be fixed.

    A word is left alone if it is in ``vocabulary``, ``known(word)`` says so, or it is short
    or a number."""
    if not vocabulary:
        return None
    choices = list(vocabulary)
    corrected: list[str] = []
    changed = False
    for term in terms:
        if (
            term in vocabulary
            or len(term) < MIN_WORD_LENGTH
            or term.isdigit()
            or (known is not None and known(term))
        ):
            corrected.append(term)
            continue
        best = _closest(term, choices, vocabulary)
        if best is None:
            corrected.append(term)
        else:
            corrected.append(best)
            changed = True
    return corrected if changed else None


def _closest(term: str, choices: list[str], vocabulary: Counter[str]) -> str | None:
    matches = process.extract(
        term, choices, scorer=fuzz.ratio, score_cutoff=MIN_SIMILARITY, limit=5
    )
    if not matches:
        return None
    # most similar first; among equally similar words prefer the common one
    matches.sort(key=lambda m: (-round(m[1]), -vocabulary[m[0]]))
    return matches[0][0]
