"""Spelling-tolerant fallback: map unknown query words to close, frequent catalog words.

Used only when the literal query matched nothing, so it can never hurt a query that works.
"""

from __future__ import annotations

from collections import Counter

from rapidfuzz import fuzz, process

#: words shorter than this are left alone: "s7" → "s8" would change what the shopper asked for
MIN_WORD_LENGTH = 4
MIN_SIMILARITY = 75.0


def correct_terms(terms: list[str], vocabulary: Counter[str]) -> list[str] | None:
    """Return ``terms`` with misspelt words replaced, or ``None`` if nothing could be fixed."""
    if not vocabulary:
        return None
    choices = list(vocabulary)
    corrected: list[str] = []
    changed = False
    for term in terms:
        if term in vocabulary or len(term) < MIN_WORD_LENGTH or term.isdigit():
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
