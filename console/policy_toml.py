"""A contact policy written back as `policy.toml` text (the what-if's starting draft).

The standard library reads TOML but does not write it; a policy is a few nested tables of
scalars, so a writer of that shape is a dozen lines here rather than a dependency. The output is
read back by the one typed loader (`serving.policy.parse_policy`); a test holds the round trip.
"""

from __future__ import annotations

import json
from typing import Any

from serving.policy import ContactPolicy


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string for the characters a policy holds
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _table(path: list[str], table: dict[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    # A table of small tables (the per-channel caps) reads best as one line per entry.
    inline = bool(tables) and all(v and all(not isinstance(x, dict) for x in v.values()) for v in tables.values()) \
        and not scalars and path != []
    if path:
        out.append(f"\n[{'.'.join(_key(p) for p in path)}]")
    for k, v in scalars.items():
        out.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables.items():
        if inline:
            out.append(f"{_key(k)} = {_value(v)}")
        else:
            _table([*path, k], v, out)


def policy_to_toml(policy: ContactPolicy) -> str:
    """`policy` as TOML text that `parse_policy` reads back to an equal policy."""
    out: list[str] = ["# the contact policy in force (docs/policy.md)"]
    _table([], policy.model_dump(mode="json"), out)
    return "\n".join(out).strip() + "\n"
