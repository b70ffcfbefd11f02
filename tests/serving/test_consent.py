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
