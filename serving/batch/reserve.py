"""Reservation of batch plans: exactly once, in order, one store call for one or several consecutive chunks.

Every (campaign, customer, channel) has a deterministic decision id (`job.decision_id_for`), the
store refuses a decision id it has seen, and a refused id is looked up in the store instead of
being reserved again: a run killed at any point and re-run with the same arguments finishes
without duplicates. The store calls go through the engine's `ContactDesk`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from serving.batch.customers import SEGMENT_EXCLUDED
from serving.batch.job import BatchJob
from serving.contact_store import OfferRef, ReserveRequest, ReserveResult
from serving.engine import DecisionEngine


def reserve_plan(engine: DecisionEngine, plan: pd.DataFrame, job: BatchJob) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reserve the plan's contacts in order; returns the plan as reserved and counters.

    A decision id the store already holds (a re-run) is not reserved again: its offers are what
    the store recorded for it.
    """
    return reserve_plans(engine, [plan], job)[0]


def reserve_plans(engine: DecisionEngine, plans: Sequence[pd.DataFrame], job: BatchJob) -> list[tuple[pd.DataFrame, dict[str, int]]]:
    """`reserve_plan` of several consecutive chunks' plans in one store call (one SQLite
    transaction: all of them are reserved or, on any failure, none), in order; per plan, the plan
    as reserved and its counters, as `reserve_plan` of each in turn would give them."""
    if job.dry_run:
        return [(plan, {"already_reserved": 0, "refused_at_reservation": 0}) for plan in plans]
    found = [_requests(plan, job) for plan in plans]
    # One store call for the chunks (one SQLite transaction, one Redis round trip), requests in plan order.
    results = engine.desk.reserve_many([r for _, requests in found for r in requests], job.as_of)
    out = []
    lo = 0
    for plan, (groups, requests) in zip(plans, found, strict=True):
        out.append(_reserved(engine, plan, groups, requests, results[lo : lo + len(requests)]))
        lo += len(requests)
    return out


def _requests(plan: pd.DataFrame, job: BatchJob) -> tuple[list[list[int]], list[ReserveRequest]]:
    """The plan's decisions with an offer, as the store's requests, and the plan rows of each."""
    offers = plan["offer_id"].to_numpy(dtype=object)
    has_offer = plan["offer_id"].notna().to_numpy()
    dids = plan["decision_id"].to_numpy(dtype=object)
    customers = plan["customer_id"].to_numpy(dtype=object)
    categories = plan["category"].to_numpy(dtype=object)
    propensities = plan["propensity"].to_numpy(dtype=np.float64)
    versions = plan["model_versions"].to_numpy(dtype=object)
    groups: list[list[int]] = []
    requests: list[ReserveRequest] = []
    parsed: dict[str, dict[str, str]] = {}
    refs: dict[tuple[str, str], OfferRef] = {}  # one OfferRef per (offer, category): the store memoises by them
    # The plan's decisions: runs of equal decision ids (as `itertools.groupby` over the rows), each
    # with its rows that carry an offer, found with array operations instead of a Python key per row.
    run_of = np.cumsum(np.r_[True, dids[1:] != dids[:-1]]) if len(plan) else np.zeros(0, dtype=np.int64)
    offered = np.flatnonzero(has_offer)
    bounds = [0, *(np.flatnonzero(np.diff(run_of[offered])) + 1).tolist(), len(offered)] if len(offered) else [0]
    offered_rows = offered.tolist()
    for lo, hi in itertools.pairwise(bounds):
        rows = offered_rows[lo:hi]
        first = rows[0]
        mv = versions[first]
        groups.append(rows)
        pairs = [(str(offers[i]), str(categories[i])) for i in rows]
        requests.append(ReserveRequest(
            str(customers[first]), job.channel,
            tuple([refs[pair] if pair in refs else refs.setdefault(pair, OfferRef(*pair)) for pair in pairs]),
            str(dids[first]), {pair[0]: float(propensities[i]) for pair, i in zip(pairs, rows, strict=True)},
            parsed[mv] if mv in parsed else parsed.setdefault(mv, json.loads(mv)),
        ))
    return groups, requests


def _reserved(engine: DecisionEngine, plan: pd.DataFrame, groups: list[list[int]], requests: list[ReserveRequest],
              results: Sequence[ReserveResult | None]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The plan as the store reserved it (offers refused dropped, ranks closed up) and its counters."""
    desk = engine.desk
    stats = {"already_reserved": 0, "refused_at_reservation": 0}
    keep = np.ones(len(plan), dtype=bool)
    ranks = plan["rank"].to_numpy().copy()
    no_offer = plan["no_offer"].to_numpy(dtype=object).copy()
    offers = plan["offer_id"].to_numpy(dtype=object)
    refused_rows: list[int] = []
    for rows, request, result in zip(groups, requests, results, strict=True):
        if result is not None and not result.refused and len(result.reserved) == len(rows):
            continue  # the store took every offer of the decision (most of a campaign)
        first = rows[0]
        refused: list[tuple[str, str]] = []
        if result is None:  # the store holds this decision id: a re-run; keep what it recorded
            stats["already_reserved"] += 1
            kept = desk.reserved_offers(request.customer_id, request.decision_id)
        else:
            kept = {r.offer_id for r in result.reserved}
            refused = list(result.refused)
        lost = [i for i in rows if offers[i] not in kept]
        if not lost:
            continue
        stats["refused_at_reservation"] += len(lost)
        rank = 0
        for i in rows:
            if offers[i] in kept:
                rank += 1
                ranks[i] = rank
            else:
                keep[i] = False
        if not kept:  # the customer ends without an offer: one no-offer row, with the store's reason
            keep[first] = True
            ranks[first] = 0
            no_offer[first] = refused[0][1] if refused else "refused"
            refused_rows.append(first)
    if keep.all() and not refused_rows:  # the store took every offer: the plan stands as it is (same object)
        return plan, stats
    out = plan.assign(rank=ranks.astype(np.int32), no_offer=no_offer)
    gone = out["no_offer"].notna()
    out.loc[gone, ["offer_id", "reasons", "reason_texts", "category"]] = None
    out.loc[gone, ["p_accept", "expected_value"]] = math.nan
    # A decision the store refused makes no contact whatever was drawn: probability 1 (the caps'
    # refusals are not randomised); the plan's own no-offer rows keep theirs.
    out.loc[refused_rows, "propensity"] = 1.0
    return out[keep].reset_index(drop=True), stats


def summarise(plan: pd.DataFrame) -> dict[str, object]:
    """Counters of one chunk (added up over chunks by `merge_summaries`)."""
    excluded = plan["no_offer"] == SEGMENT_EXCLUDED
    scored = plan[~excluded]
    offered = scored[scored["offer_id"].notna()]
    silent = scored[scored["offer_id"].isna()]
    return {
        "customers_scored": int(scored["customer_id"].nunique()),
        "customers_offered": int(offered["customer_id"].nunique()),
        "offers": int(len(offered)),
        "customers_suppressed": int(silent["customer_id"].nunique()),
        "suppressed_by_reason": {str(k): int(v) for k, v in silent["no_offer"].value_counts().items()},
        "segment_excluded": int(excluded.sum()),
        "expected_value": float(offered["expected_value"].sum()),
    }


def merge_summaries(parts: Iterable[dict[str, object]]) -> dict[str, object]:
    total: dict[str, object] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                bucket = total.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v  # type: ignore[union-attr]
            else:
                total[key] = total.get(key, 0) + value  # type: ignore[operator]
    if "suppressed_by_reason" in total:
        total["suppressed_by_reason"] = dict(sorted(total["suppressed_by_reason"].items()))  # type: ignore[union-attr]
    return total
