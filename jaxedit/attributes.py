"""The 40 CelebA attributes, in CelebA order, and lookup by name or index.

Names are matched case-insensitively; an unknown name raises `AttributeNameError` listing the
closest matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from jaxedit.errors import AttributeNameError

ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
NUM_ATTRIBUTES = len(ATTRIBUTES)

_BY_LOWER_NAME = {name.lower(): index for index, name in enumerate(ATTRIBUTES)}


def attribute_index(name_or_index: str | int, names: Sequence[str] = ATTRIBUTES) -> int:
    """Index of an attribute given by (case-insensitive) name, by index, or by a digit string."""
    if isinstance(name_or_index, int) or (isinstance(name_or_index, str) and name_or_index.strip().isdigit()):
        index = int(name_or_index)
        if not 0 <= index < len(names):
            raise AttributeNameError(f"attribute index {index} is out of range 0..{len(names) - 1}")
        return index
    key = str(name_or_index).strip().lower()
    lowered = [n.lower() for n in names]
    if key in lowered:
        return lowered.index(key)
    close = difflib.get_close_matches(key, lowered, n=3, cutoff=0.5)
    hint = ", ".join(names[lowered.index(c)] for c in close)
    suggestion = f"; did you mean {hint}?" if hint else "; see `jaxedit info` or ATTRIBUTES for the 40 names"
    raise AttributeNameError(f"unknown attribute {name_or_index!r}{suggestion}")


def attribute_name(name_or_index: str | int, names: Sequence[str] = ATTRIBUTES) -> str:
    """Canonical spelling of an attribute given by name or index."""
    return names[attribute_index(name_or_index, names)]


def parse_attributes(spec: str | Iterable[str | int] | None, names: Sequence[str] = ATTRIBUTES) -> list[int]:
    """Indices from a comma-separated spec ("Smiling,15,young"), a list, or None/"all" for all of them."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(len(names)))
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    indices = [attribute_index(item, names) for item in items if str(item).strip()]
    if len(set(indices)) != len(indices):
        raise AttributeNameError(f"attribute list {spec!r} names an attribute twice")
    return indices
