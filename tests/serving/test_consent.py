"""ConsentBook: the latest row wins, a withdrawal wins a tie (issue 19 item 11), runtime changes."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from serving.contact_store import ConsentBook

T = datetime(2026, 3, 2, 12, 0)
US = timedelta(microseconds=1)
OPT_IN = ("email", "sms", "push")


def _book(rows: list[tuple[str, str, bool, datetime]]) -> ConsentBook:
    return ConsentBook(pd.DataFrame(rows, columns=["customer_id", "channel", "granted", "ts"]))


@pytest.mark.parametrize("order", ["grant first", "withdrawal first"])
def test_equal_timestamps_resolve_to_the_withdrawal_whatever_the_row_order(order) -> None:
    rows = [("c1", "email", True, T), ("c1", "email", False, T)]
    book = _book(rows if order == "grant first" else rows[::-1])
    assert book.state("c1", "email", T) is False
    assert book.state("c1", "email", T + timedelta(days=1)) is False
    assert book.allowed("c1", "email", T, OPT_IN) is False
    assert book.state("c1", "email", T - US) is None  # nothing before the rows


def test_a_tie_among_several_rows_and_a_later_grant() -> None:
    book = _book([("c1", "sms", True, T), ("c1", "sms", False, T), ("c1", "sms", True, T),
                  ("c1", "sms", True, T + timedelta(minutes=1))])
    assert book.state("c1", "sms", T) is False
    assert book.state("c1", "sms", T + timedelta(minutes=1) - US) is False
    assert book.state("c1", "sms", T + timedelta(minutes=1)) is True  # a later grant is a later state


def test_runtime_records_tie_with_the_table_the_same_way() -> None:
    book = _book([("c1", "email", True, T)])
    book.record("c1", "email", False, T)  # an unsubscribe at the same second as the opt-in
    assert book.state("c1", "email", T) is False
    book2 = _book([("c1", "email", False, T)])
    book2.record("c1", "email", True, T)  # a re-grant that cannot be ordered after the withdrawal
    assert book2.state("c1", "email", T) is False
    book2.record("c1", "email", True, T + US)
    assert book2.state("c1", "email", T + US) is True


def test_the_latest_row_at_or_before_now_wins() -> None:
    book = _book([("c1", "email", True, T), ("c1", "email", False, T + timedelta(days=2))])
    assert book.state("c1", "email", T - US) is None
    assert book.state("c1", "email", T) is True  # at its timestamp a row applies
    assert book.state("c1", "email", T + timedelta(days=2) - US) is True
    assert book.state("c1", "email", T + timedelta(days=2)) is False


def test_states_keep_withdrawals_and_leave_out_channels_without_rows() -> None:
    book = _book([("c1", "email", False, T), ("c1", "sms", True, T), ("c2", "push", True, T)])
    assert book.states("c1", T, ["email", "sms", "push", "mail"]) == {"email": False, "sms": True}
    assert book.states("c1", T - US, ["email", "sms"]) == {}


def test_allowed_without_a_row_depends_on_opt_in_and_withdrawals_are_respected_everywhere() -> None:
    book = _book([("c1", "mail", False, T), ("c1", "email", True, T)])
    assert book.allowed("c1", "email", T, OPT_IN) is True
    assert book.allowed("c1", "sms", T, OPT_IN) is False  # opt-in channel, no row
    assert book.allowed("c1", "web", T, OPT_IN) is True  # not opt-in, no row
    assert book.allowed("c1", "mail", T, OPT_IN) is False  # not opt-in, but withdrawn


def test_forget_drops_one_customer() -> None:
    book = _book([("c1", "email", True, T), ("c2", "email", True, T)])
    book.record("c1", "sms", True, T)
    book.forget("c1")
    assert book.states("c1", T, OPT_IN) == {}
    assert book.states("c2", T, OPT_IN) == {"email": True}


def test_an_empty_or_missing_table_is_no_rows() -> None:
    for book in (ConsentBook(), ConsentBook(pd.DataFrame(columns=["customer_id", "channel", "granted", "ts"]))):
        assert book.state("c1", "email", T) is None
        assert book.allowed("c1", "web", T, OPT_IN) is True


def _reference_state(rows: list[tuple[str, str, bool, datetime]], customer: str, channel: str, now: datetime) -> bool | None:
    """The rule written out: the latest row at or before `now`, a withdrawal winning a tie."""
    found = [(ts, not granted) for c, ch, granted, ts in rows if c == customer and ch == channel and ts <= now]
    return None if not found else not max(found)[1]


def test_the_book_answers_as_the_rule_on_random_tables() -> None:
    """The book's sorted arrays (binary search) and runtime rows give the rule's answer for every
    (customer, channel, time), ties and several rows per pair included; `forget` hides the loaded
    rows, and a change recorded afterwards counts again."""
    import numpy as np

    rng = np.random.default_rng(7)
    customers, channels = [f"c{i}" for i in range(12)], ["email", "sms", "web"]
    times = [T + timedelta(hours=int(h)) for h in range(6)]
    rows = [(str(rng.choice(customers)), str(rng.choice(channels)), bool(rng.random() < 0.6), times[int(rng.integers(6))])
            for _ in range(80)]
    book = _book(rows)
    runtime = [(str(rng.choice(customers)), str(rng.choice(channels)), bool(rng.random() < 0.5), times[int(rng.integers(6))])
               for _ in range(20)]
    for c, ch, granted, ts in runtime:
        book.record(c, ch, granted, ts)
    everything = rows + runtime
    probes = [*times, times[0] - US, times[-1] + US, times[2] + US]
    for c in customers:
        for ch in channels:
            for now in probes:
                assert book.state(c, ch, now) is _reference_state(everything, c, ch, now), (c, ch, now)
    book.forget("c3")
    book.record("c3", "email", True, times[1])
    for ch in channels:
        for now in probes:
            assert book.state("c3", ch, now) is _reference_state([("c3", "email", True, times[1])], "c3", ch, now)


def test_state_many_is_state_of_each_customer() -> None:
    """A block's one lookup (`state_many`) answers as `state` does customer by customer: one row or
    several per pair, ties, rows after `now`, runtime records, live changes, a forgotten customer,
    ids longer than any key of the book, a prefix of another id, customers without any row."""
    import numpy as np

    from serving.contact_store.base import ConsentChange

    rng = np.random.default_rng(7)
    ids = [f"c{i}" for i in range(60)] + ["c1" * 40, "c", ""]
    rows = []
    for cid in ids[:50]:
        for _ in range(int(rng.integers(0, 4))):
            rows.append((cid, str(rng.choice(["email", "sms"])), bool(rng.random() < 0.6),
                         T + timedelta(hours=int(rng.integers(-48, 48)))))
    book = _book(rows)
    book.record("c3", "email", False, T - timedelta(hours=1))
    book.record("c55", "email", True, T - timedelta(hours=2))
    book.forget("c7")
    live = {"c4": (ConsentChange("email", (T - timedelta(minutes=5)).timestamp(), False),),
            "c56": (ConsentChange("email", (T + timedelta(hours=1)).timestamp(), True),)}
    for now in (T, T - timedelta(days=3), T + timedelta(days=3)):
        for channel in ("email", "sms", "push"):
            got = book.state_many(ids, channel, now, live).tolist()
            want = [book.state(c, channel, now, live.get(c, ())) for c in ids]
            assert got == [-1 if s is None else int(s) for s in want]
    assert set(book.state_many(ids, "email", T, live).tolist()) == {-1, 0, 1}
    assert ConsentBook().state_many(ids, "email", T).tolist() == [-1] * len(ids)
