"""Materialisation: Parquet round trip with metadata, and the `nbo features` command."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import FEATURE_SET, FeatureSet, build_customer_features, check_feature_set, read_materialised, write_materialised
from cli import app
from nbo.data import write_dataset
from nbo.errors import NboError
from tests.features.conftest import AS_OF


def test_round_trip_keeps_values_types_and_metadata(synth, tmp_path) -> None:
    frame = build_customer_features(synth, AS_OF)
    write_materialised(frame, tmp_path / "f.parquet", AS_OF)
    back, meta = read_materialised(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert meta == {"feature_set": FEATURE_SET.name, "feature_set_version": FEATURE_SET.version, "as_of": AS_OF}
    check_feature_set(meta)
    schema_meta = pq.read_schema(tmp_path / "f.parquet").metadata
    assert schema_meta[b"nbo.as_of"] == b"2025-06-01T00:00:00"


def test_other_feature_set_version_is_refused(synth, tmp_path) -> None:
    frame = build_customer_features(synth, AS_OF)
    old = FeatureSet("nbo-core", "0.9.0", (), (), ())
    write_materialised(frame, tmp_path / "old.parquet", AS_OF, old)
    _, meta = read_materialised(tmp_path / "old.parquet")
    with pytest.raises(NboError, match="0.9.0"):
        check_feature_set(meta)


def test_files_without_metadata_or_missing_are_refused(tmp_path) -> None:
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(NboError, match="nbo.feature_set"):
        read_materialised(tmp_path / "plain.parquet")
    with pytest.raises(NboError, match="no materialised"):
        read_materialised(tmp_path / "absent.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(NboError, match="not a readable"):
        read_materialised(tmp_path / "bad.parquet")


def test_cli_writes_features_as_of_a_date(synth, tmp_path) -> None:
    write_dataset(synth, tmp_path / "data")
    out = tmp_path / "features.parquet"
    result = CliRunner().invoke(app, ["features", "--data", str(tmp_path / "data"), "--as-of", "2025-06-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame, meta = read_materialised(out)
    assert meta["as_of"] == AS_OF
    pd.testing.assert_frame_equal(frame, build_customer_features(synth, AS_OF))


def test_cli_converts_a_timezone_and_rejects_garbage(synth, tmp_path) -> None:
    write_dataset(synth, tmp_path / "data")
    out = tmp_path / "f.parquet"
    ok = CliRunner().invoke(app, ["features", "--data", str(tmp_path / "data"), "--as-of", "2025-06-01T02:00:00+02:00",
                                  "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert read_materialised(out)[1]["as_of"] == AS_OF
    bad = CliRunner().invoke(app, ["features", "--data", str(tmp_path / "data"), "--as-of", "yesterday-ish",
                                   "--out", str(out)])
    assert bad.exit_code == 2 and "--as-of" in bad.output


def test_chunks_stream_to_one_file_equal_to_the_whole_frame(synth, tmp_path) -> None:
    from features import customer_feature_chunks, write_materialised_chunks

    frame = build_customer_features(synth, AS_OF)
    write_materialised(frame, tmp_path / "whole.parquet", AS_OF)
    rows = write_materialised_chunks(customer_feature_chunks(synth, AS_OF, chunk_customers=7), tmp_path / "c.parquet", AS_OF)
    assert rows == len(frame)
    assert pq.ParquetFile(tmp_path / "c.parquet").num_row_groups == -(-len(frame) // 7)
    back, meta = read_materialised(tmp_path / "c.parquet")
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert meta == read_materialised(tmp_path / "whole.parquet")[1]
    assert pq.read_schema(tmp_path / "c.parquet").equals(pq.read_schema(tmp_path / "whole.parquet"), check_metadata=True)


def test_a_failing_chunk_leaves_the_previous_file_untouched(synth, tmp_path) -> None:
    from features import customer_feature_chunks, write_materialised_chunks

    out = tmp_path / "f.parquet"
    write_materialised(build_customer_features(synth, AS_OF), out, AS_OF)
    before = out.read_bytes()

    def broken():
        chunks = customer_feature_chunks(synth, AS_OF, chunk_customers=10)
        yield next(chunks)
        raise NboError("piece 2 failed")

    with pytest.raises(NboError, match="piece 2"):
        write_materialised_chunks(broken(), out, AS_OF)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]
    with pytest.raises(ValueError, match="at least one chunk"):
        write_materialised_chunks([], tmp_path / "none.parquet", AS_OF)
    assert not (tmp_path / "none.parquet").exists()


def test_row_ranges_read_by_a_worker_equal_the_streamed_chunks(synth, tmp_path) -> None:
    """`MaterialisedRows.read` (a batch worker reading its own chunk) frames rows exactly as
    `iter_materialised` does, also for chunks that straddle row groups, in any order."""
    from features import MaterialisedRows, customer_feature_chunks, iter_materialised, write_materialised_chunks

    path = tmp_path / "c.parquet"
    n = write_materialised_chunks(customer_feature_chunks(synth, AS_OF, chunk_customers=7), path, AS_OF)
    assert pq.ParquetFile(path).num_row_groups > 2
    chunks = list(iter_materialised(path, 5))  # 5 rows against groups of 7: most chunks straddle two
    reader = MaterialisedRows(path)
    for i in [*range(len(chunks)), 0, len(chunks) - 1]:
        pd.testing.assert_frame_equal(reader.read(5 * i, 5 * i + 5), chunks[i], check_exact=True)
    assert len(reader.read(0, n + 10)) == n
    with pytest.raises(ValueError):
        reader.read(n, n + 5)
