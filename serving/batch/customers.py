"""Which customers a batch run decides for: a segment rule over their features, or a list of ids."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from features import customer_feature_names
from nbo.errors import NboError
from serving.rules import Rule, compile_rule

#: `no_offer` of a customer the segment rule left out.
SEGMENT_EXCLUDED = "segment"


def compile_segment(text: str | None) -> Rule | None:
    """The segment rule (eligibility rule language over customer features); None = everyone."""
    if text is None or not text.strip():
        return None
    return compile_rule(text, customer_feature_names())


def read_customer_list(path: Path) -> frozenset[str]:
    """Ids from a Parquet/CSV file with a `customer_id` column, or plain text with one id a line."""
    path = Path(path)
    if not path.is_file():
        raise NboError(f"--customers {path} does not exist or is not a file")
    try:
        if path.suffix.lower() == ".parquet":
            names = pq.read_schema(path).names
            if "customer_id" not in names:
                raise NboError(f"--customers {path} has no customer_id column")
            ids = pq.read_table(path, columns=["customer_id"]).column(0).to_pylist()
        else:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            header = lines[0].split(",") if lines else []
            if "customer_id" in header:
                col = header.index("customer_id")
                ids = [line.split(",")[col].strip().strip('"') for line in lines[1:] if line]
            else:
                ids = [line for line in lines if line]
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise NboError(f"--customers {path} is not readable: {str(exc).splitlines()[0][:200]}") from None
    found = frozenset(str(i) for i in ids if i is not None and str(i) != "")
    if not found:
        raise NboError(f"--customers {path} lists no customer ids")
    return found
