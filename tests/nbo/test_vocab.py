"""One category list and one channel vocabulary: the core's (`nbo.vocab`), used by every room."""

from __future__ import annotations

import ast
from pathlib import Path

import features
import simulator
from nbo import vocab
from simulator.config import BANNER_CODES, CH, OPT_IN_CODES, OUTBOUND_CODES, SimConfig

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("nbo", "simulator", "features", "models", "training", "serving", "evaluation", "cli")


def test_categories_are_the_cores() -> None:
    assert features.CATEGORIES is vocab.CATEGORIES
    assert simulator.CATEGORIES is vocab.CATEGORIES
    assert SimConfig().categories == vocab.CATEGORIES
    assert vocab.CATEGORIES == ("travel", "books", "electronics", "fashion", "home", "beauty", "sports", "grocery")


def test_simulator_channel_codes_name_the_cores_channel_groups() -> None:
    names = {code: name for name, code in CH.items()}
    assert tuple(names[c] for c in OUTBOUND_CODES) == vocab.OUTBOUND_CHANNELS == ("email", "sms", "push", "mail")
    assert tuple(names[c] for c in OPT_IN_CODES) == vocab.DEFAULT_OPT_IN_CHANNELS == ("email", "sms", "push")
    assert tuple(names[c] for c in BANNER_CODES) == vocab.ONLINE_CHANNELS == ("web", "app")
    assert set(vocab.OUTBOUND_CHANNELS) | set(vocab.ONLINE_CHANNELS) == set(vocab.CONTACT_CHANNELS)


def _string_tuples(tree: ast.AST) -> list[tuple[str, ...]]:
    """Every tuple or list literal of string constants in a module."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List) and node.elts and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
        ):
            out.append(tuple(e.value for e in node.elts))
    return out


def test_no_room_spells_a_vocabulary_list_again() -> None:
    """A second copy of the category list or a channel group would drift: only nbo/vocab.py has them."""
    lists = {"categories": set(vocab.CATEGORIES), "outbound channels": set(vocab.OUTBOUND_CHANNELS)}
    copies = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            if path == ROOT / "nbo" / "vocab.py":
                continue
            for values in _string_tuples(ast.parse(path.read_text(encoding="utf-8"))):
                for what, wanted in lists.items():
                    if set(values) == wanted:
                        copies.append(f"{path.relative_to(ROOT)}: {what} {values}")
    assert not copies, "use nbo.vocab instead of a copy:\n" + "\n".join(copies)
