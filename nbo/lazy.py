"""Package exports imported on first use (PEP 562), so importing one module of a package does not
import all of its siblings.

Why: `from serving.api_models import X` runs `serving/__init__.py` first; when that file imported
every public name eagerly, BentoML's supervisor (which only needs the service class) paid for the
contact stores, Redis' client and pandas, and `nbo serve` paid for scikit-learn (through the BG/NBD
estimator of `features`) before it checked one file. A package's `__init__` declares its exports
as (name -> module) and gets `__getattr__` / `__dir__` from `lazy_exports`; `from package import
name` and `package.name` work as before, the module is imported when a name is first asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`: `exports` maps each public name to its module."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
