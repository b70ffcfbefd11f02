"""Feature groups: every feature column is declared once, next to the function that computes it.

A `FeatureGroup` names the columns one computing function returns, in output order (per-category
columns as a function of the category list). The frame builders check what was computed against
the declaration and raise `FeatureDeclarationError` on any difference, so a column computed but
not declared is never silently dropped, and a declared column is never left empty. The model
input lists (`features.CUSTOMER_FEATURES`, `features.CANDIDATE_FEATURES`) are the concatenation
of the groups' declarations, in group order.

Adding a feature: compute it in its group's function, add its name to that group's declaration
(same module), and bump `FEATURE_SET.version` (docs/features.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass


class FeatureDeclarationError(RuntimeError):
    """What a feature function computed differs from its group's declaration (a bug in nbo)."""


@dataclass(frozen=True)
class FeatureGroup:
    """The columns one computing function returns: numeric model inputs, then text columns.

    `numeric` is a tuple, or a function of the category list for per-category columns.
    """

    name: str
    numeric: tuple[str, ...] | Callable[[tuple[str, ...]], tuple[str, ...]]
    text: tuple[str, ...] = ()

    def columns(self, categories: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The numeric columns, in output order."""
        return _numeric(self, categories)

    def declared(self, categories: tuple[str, ...] = ()) -> frozenset[str]:
        """Every column of the group (numeric and text)."""
        return _declared(self, categories)

    def check(self, computed: Mapping[str, object], categories: tuple[str, ...] = ()) -> Mapping[str, object]:
        """`computed` itself if its keys are exactly the declared columns; else raise. One set
        comparison for a group of fixed columns (it runs on every online request: ~3 us)."""
        declared = self._fixed if isinstance(self.numeric, tuple) else _declared(self, categories)
        if computed.keys() != declared:
            raise_mismatch(self.name, computed.keys(), declared)
        return computed

    @functools.cached_property
    def _fixed(self) -> frozenset[str]:
        return _declared(self, ())


@functools.lru_cache(maxsize=64)
def _numeric(group: FeatureGroup, categories: tuple[str, ...]) -> tuple[str, ...]:
    names = group.numeric if isinstance(group.numeric, tuple) else tuple(group.numeric(categories))
    if len(set(names)) != len(names):
        raise FeatureDeclarationError(f"feature group {group.name!r} declares a column twice")
    return names


@functools.lru_cache(maxsize=64)
def _declared(group: FeatureGroup, categories: tuple[str, ...]) -> frozenset[str]:
    return frozenset((*_numeric(group, categories), *group.text))


def raise_mismatch(what: str, computed: Iterable[str], declared: Iterable[str]) -> None:
    """Raise `FeatureDeclarationError` naming the columns computed but not declared and vice versa."""
    computed, declared = list(computed), list(declared)
    extra = [c for c in computed if c not in set(declared)]
    missing = [c for c in declared if c not in set(computed)]
    raise FeatureDeclarationError(
        f"{what}: computed but not declared: {extra or 'none'}; declared but not computed: {missing or 'none'}. "
        "Declare each column once in its FeatureGroup (features/definitions.py) and bump the feature-set version."
    )


def numeric_columns(groups: Iterable[FeatureGroup], categories: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The numeric columns of `groups`, concatenated in group order."""
    return tuple(name for group in groups for name in group.columns(categories))


def text_columns(groups: Iterable[FeatureGroup]) -> tuple[str, ...]:
    """The text columns of `groups`, concatenated in group order."""
    return tuple(name for group in groups for name in group.text)
