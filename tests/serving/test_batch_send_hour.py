"""`nbo score --send-hour best` (issue 22 item 5): a `send_at` per customer, outside quiet hours,
in the customer's time zone; refused for inbound channels. Runs on test_engine.py's world."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from nbo.data import load_table
from serving.policy import QuietHours
from serving.send_time import SendTimes, send_times_for
from tests.serving.test_engine import NOW, World, build_world

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory)


def _score(world: World, out: Path, *extra: str, channel: str = "sms"):  # noqa: ANN202
    return runner.invoke(app, ["score", "--data", str(world.data), "--features", str(world.features), "--tracking-uri",
                               world.tracking_uri, "--as-of", NOW.isoformat(), "--channel", channel, "--out", str(out),
                               "--store", str(out.parent / "contacts.db"), "--no-progress", "--dry-run", *extra])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_send_at_is_the_chooser_s_and_never_quiet(world: World, tmp_path: Path, fmt: str) -> None:
    plain = _score(world, tmp_path / f"now.{fmt}")
    assert plain.exit_code == 0, plain.output
    best = _score(world, tmp_path / f"best.{fmt}", "--send-hour", "best")
    assert best.exit_code == 0, best.output
    read = (lambda p: pd.read_csv(p, dtype={"customer_id": str})) if fmt == "csv" else pd.read_parquet
    a, b = read(tmp_path / f"now.{fmt}"), read(tmp_path / f"best.{fmt}")
    assert "send_at" not in a.columns and list(b.columns) == [*a.columns, "send_at"]
    pd.testing.assert_frame_equal(a, b.drop(columns="send_at"))  # the decisions are the same
    send_at = pd.to_datetime(b["send_at"], utc=True).dt.tz_localize(None)
    assert len(b) > 0 and send_at.notna().all()
    assert ((send_at >= NOW) & (send_at < NOW + timedelta(hours=24))).all()
    quiet = QuietHours()
    assert not any(quiet.is_quiet("sms", t.to_pydatetime()) for t in send_at)
    expected = send_times_for(b["customer_id"].tolist(), load_table(world.data, "events"),
                              load_table(world.data, "customers"), NOW, quiet, "sms")
    assert [expected[c] for c in b["customer_id"]] == [t.to_pydatetime() for t in send_at]
    assert send_at.dt.hour.nunique() > 1  # customers differ


def test_inbound_channels_and_unknown_values_are_refused(tmp_path: Path) -> None:
    for channel, value, words in (("web", "best", "outbound"), ("email", "later", "now or best")):
        result = runner.invoke(app, ["score", "--data", str(tmp_path), "--as-of", "2025-01-01T10:00", "--channel", channel,
                                     "--out", str(tmp_path / "o.parquet"), "--dry-run", "--send-hour", value])
        assert result.exit_code == 2 and words in result.output
        assert not (tmp_path / "o.parquet").exists()


def test_send_times_for_new_customers_is_the_prior_s_best_hour() -> None:
    days = pd.date_range("2025-12-15 19:10", periods=20, freq="D")  # 20 evenings each
    events = pd.DataFrame({"customer_id": ["a"] * 20 + ["b"] * 20 + ["c"] * 20, "ts": days.append([days, days]),
                           "type": ["page_view"] * 60})
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "new"],
                              "timezone": [None, "America/New_York", None, None]})
    now = datetime(2026, 1, 10, 9, 0)
    when = send_times_for(["a", "b", "new"], events, customers, now, QuietHours(), "email")
    assert when["a"] == datetime(2026, 1, 10, 19, 0)
    assert when["b"] == datetime(2026, 1, 10, 19, 0)  # b's events are at 14:10 New York: 14:00 local = 19:00 UTC
    assert when["new"] == datetime(2026, 1, 10, 19, 0)  # the prior: two of three customers' 19:00 (b's is 14:00 local)


def test_send_times_one_by_one_equals_many() -> None:
    days = pd.date_range("2025-12-01 07:20", periods=30, freq="D")
    events = pd.DataFrame({"customer_id": ["a"] * 30 + ["b"] * 30, "ts": days.append(days + pd.Timedelta(hours=13)),
                           "type": ["page_view"] * 60})
    customers = pd.DataFrame({"customer_id": ["a", "b", "new"], "timezone": ["Asia/Tokyo", None, "Europe/Paris"]})
    st = SendTimes.from_data(events, customers, datetime(2026, 1, 5))
    now = datetime(2026, 1, 5, 3, 0)
    many = st.send_at_many(["a", "b", "new", "a"], now, QuietHours(), "push")
    assert many == {c: st.send_at(c, now, QuietHours(), "push") for c in ("a", "b", "new")}
    assert many["b"] == datetime(2026, 1, 5, 20, 0)  # b's evenings, 20:00 UTC, before quiet hours at 21:00
    assert np.allclose(st.profile("new"), st.model.prior_)
