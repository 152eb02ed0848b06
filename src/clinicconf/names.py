"""What a typed name may contain: the one rule for every name a person types (a
guest's display name; staff, patients, event types and titles entered by staff).

A name is shown to other people, so it must look like what it is. Unicode lets a
name hide itself (zero-width and control characters), pose as another (a
right-to-left override makes "nimdA adA" read "Ada Admin"), or smear over its
neighbours (a pile of combining marks). The rule: normalise to NFC, drop control,
format, private-use, surrogate and unassigned characters and those that draw
nothing, turn every kind of space
or line break into one plain space, keep at most a few combining marks on each
character, and count as empty a name with no letter, digit, punctuation or symbol
left. Dropping format characters also drops the zero-width joiners of emoji
sequences and some scripts' joining controls; the name stays readable.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# A guest's display name, as the others will see it: no longer than this.
MAX_DISPLAY_NAME: Final = 60

# Categories never kept: Cc control, Cf format (bidirectional overrides and
# isolates, zero-width spaces and joiners, soft hyphen), Co private use,
# Cs surrogates, Cn unassigned.
_DROPPED: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})
# Characters of other categories that draw nothing (Unicode's default-ignorable
# letters and marks, and the blank Braille pattern): a name of only these looks empty.
_BLANK: Final = frozenset(
    {"\u034f", "\u115f", "\u1160", "\u17b4", "\u17b5", "\u2800", "\u3164", "\uffa0"}
    | {chr(c) for c in range(0x180B, 0x1810)}
    | {chr(c) for c in range(0xFE00, 0xFE10)}
    | {chr(c) for c in range(0xE0100, 0xE01F0)}
)
# Vietnamese and Indic names need two or three marks on one letter; more is a smear.
MAX_MARKS_PER_CHARACTER: Final = 4


def clean(value: str) -> str:
    """`value` as it will be shown, or "" when nothing visible is left of it."""
    kept: list[str] = []
    marks = 0
    for character in unicodedata.normalize("NFC", value):
        category = unicodedata.category(character)
        if (category in _DROPPED and not character.isspace()) or character in _BLANK:
            continue
        if character.isspace() or category in {"Zl", "Zp"}:
            kept.append(" ")
            marks = 0
        elif category.startswith("M"):
            marks += 1
            if kept and kept[-1] != " " and marks <= MAX_MARKS_PER_CHARACTER:
                kept.append(character)
        else:
            kept.append(character)
            marks = 0
    name = " ".join("".join(kept).split())
    if not any(unicodedata.category(c)[0] in "LNPS" for c in name):
        return ""
    return name
