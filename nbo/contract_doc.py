"""Render the data contract as Markdown, so docs/data.md is generated from the specs, never drifts.

Regenerate with `python -m nbo.contract_doc > docs/data.md`; a test checks the file is current.
"""

from __future__ import annotations

import json

from nbo.contract import TABLES, ColumnSpec

_INTRO = """# The data contract

nbo reads six tables from a data directory: `DIR/<table>.parquet` or `DIR/<table>.csv` (one of
the two per table). They are defined once in `nbo/contract.py`; this page is generated from it
(`python -m nbo.contract_doc > docs/data.md`). `nbo validate --data DIR` checks a directory, and
every command that loads data goes through the same validation: a file that breaks a rule is
refused with exit status 2 and one line naming the table, the column, how many rows are wrong and
one example value.

**What is required** is what every export has: `customers` (`customer_id`, `signup_ts`) and
`events` (`customer_id`, `ts`, `type`, and `amount` when there are purchases). Consents, offers,
contacts and no_offers may come later: a directory without them validates, and each absent optional table
or column is named with what nbo cannot do without it (`nbo.data.limitations`, logged by every
command that loads the directory). An optional column that is present is checked in full.

General rules:
- **Timestamps** are ISO-8601 and read as UTC: tz-aware values are converted to UTC; tz-naive values
  are taken as UTC; a column mixing aware and naive values is refused.
- **CSV** files are UTF-8 with a header row; empty cells are missing values; booleans are
  `true/false` (also `1/0`, `yes/no`); `offers.channels` is written `web|app|email`.
- **Extra columns** are kept and ignored. **Keys** must be unique.
- **References**: every `customer_id` in consents, events, contacts and no_offers exists in
  customers, every `offer_id` in contacts exists in offers, and no `decision_id` is in both contacts
  and no_offers.
- Ids are at most 128 characters. Categories are an open vocabulary; channels, event types, offer
  kinds, outcomes and age bands are closed (`nbo/vocab.py`).
- Other checks: amounts and offer value/cost are >= 0; `contacts.propensity` is in (0, 1];
  an offer's `valid_to` is not before its `valid_from`; a contact's `outcome_ts` is not before its
  `ts`; an offer with an `incentive` (an incentive variant) has an `incentive_cost` and a
  `base_offer_id` that is a plain offer (no incentive) of the same table.
"""


def _type(col: ColumnSpec) -> str:
    kind = {"str": "text", "ts": "timestamp (UTC)", "float": "number", "bool": "boolean", "int": "integer",
            "channels": "list of channels", "timezone": "IANA time zone name"}[col.kind]
    parts = [kind]
    if col.allowed:
        parts.append("one of " + ", ".join(f"`{v}`" for v in col.allowed))
    if col.min_value is not None:
        parts.append(f"{'>' if col.min_exclusive else '>='} {col.min_value:g}")
    if col.max_value is not None:
        parts.append(f"<= {col.max_value:g}")
    return "; ".join(parts)


def _required(col: ColumnSpec) -> str:
    """Whether the column must be there (a file without it is refused) and may have empty cells."""
    if col.required:
        return "no (may be empty)" if col.nullable else "yes"
    return "no (may be absent or empty)" if col.nullable else "no (may be absent; if present, never empty)"


def render_markdown() -> str:
    """The contract as Markdown: one section per table, a column table and an example row."""
    out = [_INTRO]
    for spec in TABLES.values():
        out.append(f"\n## `{spec.name}`\n\n{spec.doc}\n")
        if spec.required:
            out.append("File: required.\n")
        else:
            out.append(f"File: optional. Without it: {spec.if_absent}.\n")
        if spec.key:
            out.append(f"Key: ({', '.join(f'`{k}`' for k in spec.key)}).\n")
        out.append("\n| column | type | required | meaning |\n|---|---|---|---|")
        for col in spec.columns:
            meaning = col.doc
            if not col.required:
                meaning = f"{meaning} Without the column: {col.if_absent}.".strip()
            out.append(f"| `{col.name}` | {_type(col)} | {_required(col)} | {meaning} |")
        if (family := spec.attribute_columns) is not None:
            meaning = f"{family.doc} Without such columns: {family.if_absent}."
            out.append(f"| `{family.name}<name>` | {_type(family)} | no (any number; may be absent or empty) | {meaning} |")
        out.append("\nExample row:\n\n```json\n" + json.dumps(spec.example, indent=2) + "\n```\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(render_markdown(), end="")
