"""Benchmark: customer features at 2-3 sizes (time, peak RSS), a naive per-customer baseline, and
the online one-customer path.

    .venv/bin/python benchmarks/bench_features.py                 # 100k, 300k, 1M customers
    .venv/bin/python benchmarks/bench_features.py --sizes 20000 50000 --events-per-customer 20
    .venv/bin/python benchmarks/bench_features.py --sizes 1000000 --write   # what `nbo features` does

`--write` times what `nbo features` does after loading the data: the features computed in pieces
of customers (`customer_feature_chunks`) and streamed to a Parquet file (`write_materialised_chunks`,
in a temporary directory); no naive baseline and no online calls (they need the whole frame). Its
peak RSS is reported twice: the whole process (data generation included) and the features alone
(the kernel's high-water mark reset after the data are built, /proc/self/clear_refs).

Data are synthetic and contract-shaped (pyarrow-backed string ids as `load_dataset` returns them,
datetime64[ns] timestamps), generated with numpy. Each size runs in a fresh subprocess so that its
peak RSS is its own (it includes the data, ~20 events per customer).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import (  # noqa: E402
    CATEGORIES,
    Context,
    build_candidate_features,
    build_customer_features,
    candidate_matrix,
    customer_feature_chunks,
    customer_features_online,
    prepare_offers,
    write_materialised_chunks,
)
from nbo.data import Dataset  # noqa: E402
from nbo.vocab import CONTACT_CHANNELS, EVENT_CHANNELS, EVENT_TYPES, OFFER_KINDS, OUTCOMES  # noqa: E402

AS_OF = pd.Timestamp("2025-06-01")
STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _strings(values: list[str], idx: np.ndarray) -> pd.Series:
    return pd.Series(pd.array(pa.array(values, pa.string()).take(pa.array(idx)), dtype=STR))


def _ts(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    return (AS_OF - pd.Timedelta(days=days)).to_datetime64().astype("datetime64[ns]") + rng.integers(
        0, days * 86_400, n
    ).astype("timedelta64[s]").astype("timedelta64[ns]")


def synthetic(customers: int, events_per_customer: float, seed: int = 0) -> Dataset:
    """A contract-shaped dataset: ~events_per_customer events and 2 contacts per customer, 50 offers."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:08d}" for i in range(customers)]
    n_ev = int(customers * events_per_customer)
    n_co = customers * 2
    cats = [*CATEGORIES, "garden"]
    etype_p = np.array([0.35, 0.08, 0.25, 0.08, 0.15, 0.05, 0.02, 0.02])
    etype = rng.choice(len(EVENT_TYPES), n_ev, p=etype_p / etype_p.sum())
    amount = np.where(etype == EVENT_TYPES.index("purchase"), rng.gamma(2.0, 40.0, n_ev), np.nan)
    cat_idx = rng.integers(0, len(cats) + 1, n_ev)
    category = pd.Series(pd.array(pa.array([*cats, None], pa.string()).take(pa.array(cat_idx)), dtype=STR))
    events = pd.DataFrame(
        {
            "customer_id": _strings(ids, rng.integers(0, customers, n_ev)),
            "ts": _ts(rng, n_ev, 730),
            "channel": _strings(list(EVENT_CHANNELS), rng.integers(0, len(EVENT_CHANNELS), n_ev)),
            "type": _strings(list(EVENT_TYPES), etype),
            "category": category,
            "product_id": pd.Series(pd.array([None] * 0 + [np.nan] * n_ev, dtype=STR)) if n_ev < 0 else pd.Series(
                pd.array(pa.nulls(n_ev, pa.string()), dtype=STR)
            ),
            "amount": amount,
        }
    )
    offer_ids = [f"o{i:03d}" for i in range(50)]
    offers = pd.DataFrame(
        {
            "offer_id": pd.array(offer_ids, dtype=STR),
            "name": pd.array(offer_ids, dtype=STR),
            "category": pd.array([cats[i % len(cats)] for i in range(50)], dtype=STR),
            "kind": pd.array([OFFER_KINDS[i % len(OFFER_KINDS)] for i in range(50)], dtype=STR),
            "channels": [tuple(CONTACT_CHANNELS[: 1 + i % 6]) for i in range(50)],
            "value": rng.uniform(1, 50, 50),
            "cost": rng.uniform(0, 1, 50),
            "valid_from": pd.Timestamp("2024-01-01"),
            "valid_to": pd.Timestamp("2027-01-01"),
            "eligibility": pd.array([None] * 50, dtype=STR),
        }
    )
    co_ts = _ts(rng, n_co, 365)
    outcome = rng.integers(0, len(OUTCOMES), n_co)
    out_ts = co_ts + rng.integers(60, 10 * 86_400, n_co).astype("timedelta64[s]").astype("timedelta64[ns]")
    out_ts[outcome == OUTCOMES.index("pending")] = np.datetime64("NaT")
    contacts = pd.DataFrame(
        {
            "decision_id": pd.array([f"d{i:09d}" for i in range(n_co)], dtype=STR),
            "customer_id": _strings(ids, rng.integers(0, customers, n_co)),
            "offer_id": _strings(offer_ids, rng.integers(0, 50, n_co)),
            "channel": _strings(list(CONTACT_CHANNELS), rng.integers(0, len(CONTACT_CHANNELS), n_co)),
            "ts": co_ts,
            "propensity": rng.uniform(0.05, 1, n_co),
            "outcome": _strings(list(OUTCOMES), outcome),
            "outcome_ts": out_ts,
        }
    )
    consents = pd.DataFrame(
        {
            "customer_id": _strings(ids, np.arange(customers)),
            "channel": _strings(list(CONTACT_CHANNELS), rng.integers(0, 6, customers)),
            "granted": rng.random(customers) < 0.7,
            "ts": _ts(rng, customers, 700),
        }
    )
    cust = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype=STR),
            "signup_ts": _ts(rng, customers, 1000),
            "region": _strings(["north", "south"], rng.integers(0, 2, customers)),
            "age_band": pd.Series(pd.array(pa.nulls(customers, pa.string()), dtype=STR)),
            "acquisition_channel": _strings(list(EVENT_CHANNELS), rng.integers(0, 4, customers)),
            "loyalty_member": rng.random(customers) < 0.3,
        }
    )
    return Dataset(customers=cust, consents=consents, events=events, offers=offers, contacts=contacts)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_mb() -> float:
    """Peak RSS since the last `_reset_peak` (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_write(customers: int, events_per_customer: float, chunk_customers: int | None) -> dict[str, object]:
    """What `nbo features` does after loading: features in pieces, streamed to a Parquet file."""
    t0 = time.perf_counter()
    data = synthetic(customers, events_per_customer)
    gen_s = time.perf_counter() - t0
    rss_data = _rss_mb()
    reset = _reset_peak()
    options = {} if chunk_customers is None else {"chunk_customers": chunk_customers}
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = write_materialised_chunks(customer_feature_chunks(data, AS_OF, **options), Path(tmp) / "f.parquet", AS_OF)
        feat_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {
        "customers": customers,
        "events": len(data.events),
        "contacts": len(data.contacts),
        "mode": "write",
        "generate_s": round(gen_s, 1),
        "features_s": round(feat_s, 2),
        "features_cpu_s": round(cpu_s, 2),
        "us_per_customer": round(feat_s / customers * 1e6, 2),
        "rows_out": rows,
        "rss_after_data_mb": round(rss_data),
        "peak_rss_mb": round(_rss_mb()),
        "features_peak_rss_mb": round(_hwm_mb()) if reset else None,
    }


def _naive_features(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The baseline we avoid: a per-customer `groupby().apply` computing a *subset* of the features
    (RFM and 30-day browse counts)."""
    past = events[events["ts"] < as_of]

    def one(g: pd.DataFrame) -> pd.Series:
        buy = g[g["type"] == "purchase"]
        age = (as_of - g["ts"]).dt.total_seconds() / 86_400
        bage = age[buy.index]
        return pd.Series(
            {
                "recency_days": bage.min() if len(buy) else 9999.0,
                "purchases_30d": float((bage <= 30).sum()),
                "spend_365d": float(buy["amount"].fillna(0)[bage <= 365].sum()),
                "page_views_30d": float(((g["type"] == "page_view") & (age <= 30)).sum()),
                "cart_adds_30d": float(((g["type"] == "add_to_cart") & (age <= 30)).sum()),
            }
        )

    return past.groupby("customer_id").apply(one)


def run_one(customers: int, events_per_customer: float, naive_sample: int) -> dict[str, object]:
    t0 = time.perf_counter()
    data = synthetic(customers, events_per_customer)
    gen_s = time.perf_counter() - t0
    rss_data = _rss_mb()
    t0 = time.perf_counter()
    frame = build_customer_features(data, AS_OF)
    feat_s = time.perf_counter() - t0
    result: dict[str, object] = {
        "customers": customers,
        "events": len(data.events),
        "contacts": len(data.contacts),
        "generate_s": round(gen_s, 1),
        "features_s": round(feat_s, 2),
        "us_per_customer": round(feat_s / customers * 1e6, 2),
        "rows_out": len(frame),
        "rss_after_data_mb": round(rss_data),
        "peak_rss_mb": round(_rss_mb()),
    }
    if naive_sample:
        sample_ids = list(data.customers["customer_id"].iloc[:naive_sample])
        sub = data.for_customers(sample_ids)
        t0 = time.perf_counter()
        _naive_features(sub.events, AS_OF)
        naive_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_customer_features(sub, AS_OF)
        fast_sub_s = time.perf_counter() - t0
        result["naive_sample_customers"] = naive_sample
        result["naive_s"] = round(naive_s, 2)
        result["naive_us_per_customer"] = round(naive_s / naive_sample * 1e6, 1)
        result["naive_estimated_full_s"] = round(naive_s / naive_sample * customers, 0)
        result["vectorised_same_sample_s"] = round(fast_sub_s, 3)
        result["speedup_vs_naive_per_customer"] = round(
            (naive_s / naive_sample) / (feat_s / customers), 1
        )
    # Online: one customer x 50 offers from an in-memory materialised row + its contacts:
    # `candidate_matrix` with offers prepared once (the service path), `build_candidate_features`
    # from the raw offers DataFrame, and a customer row recomputed from the customer's raw rows.
    contacts_by = data.contacts.groupby("customer_id", sort=False).indices
    ctx = Context(channel="web", page_category="travel", session_categories=["books", "home"], device="mobile")
    rng = np.random.default_rng(1)
    picks = rng.choice(len(frame), 200)
    prepared = prepare_offers(data.offers)  # once, as the service does at start / catalogue reload
    matrix_t, frame_t, raw_t = [], [], []
    events_by = data.events.groupby("customer_id", sort=False).indices
    for pos in picks:
        cid = frame.index[pos]
        row = frame.iloc[[pos]]
        own_contacts = data.contacts.iloc[contacts_by.get(cid, [])]
        t0 = time.perf_counter()
        candidate_matrix(row, prepared, own_contacts, ctx, AS_OF)
        matrix_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        build_candidate_features(row, data.offers, own_contacts, ctx, AS_OF)
        frame_t.append(time.perf_counter() - t0)
        own_events = data.events.iloc[events_by.get(cid, [])]
        own_customer = data.customers.iloc[[pos]]
        t0 = time.perf_counter()
        customer_features_online(own_customer, own_events, own_contacts, AS_OF)
        raw_t.append(time.perf_counter() - t0)
    result["online_candidate_matrix_median_ms"] = round(statistics.median(matrix_t[20:]) * 1e3, 3)
    result["online_candidate_frame_median_ms"] = round(statistics.median(frame_t[20:]) * 1e3, 3)
    result["online_customer_from_raw_rows_median_ms"] = round(statistics.median(raw_t[20:]) * 1e3, 2)
    return result


def hardware() -> str:
    from _hardware import cpu_model

    model = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}; {os.cpu_count()} cpus visible; {mem:.0f} GiB RAM; Python {platform.python_version()}; "
        f"pandas {pd.__version__}; numpy {np.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--events-per-customer", type=float, default=20.0)
    parser.add_argument("--naive-sample", type=int, default=2000)
    parser.add_argument("--write", action="store_true",
                        help="time `nbo features`' path: pieces of customers streamed to Parquet (see above)")
    parser.add_argument("--chunk-customers", type=int, help="customers per piece with --write (default: nbo's)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.write:
            print(json.dumps(run_write(args.one, args.events_per_customer, args.chunk_customers)))
        else:
            print(json.dumps(run_one(args.one, args.events_per_customer, args.naive_sample)))
        return
    print(f"hardware: {hardware()}")
    print(f"as_of {AS_OF.date()}, {args.events_per_customer:g} events and 2 contacts per customer, 50 offers")
    rows = []
    for size in args.sizes:
        extra = ["--write"] if args.write else []
        if args.chunk_customers:
            extra += ["--chunk-customers", str(args.chunk_customers)]
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--events-per-customer", str(args.events_per_customer),
             "--naive-sample", str(args.naive_sample), *extra],
            check=True, capture_output=True, text=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(res)
        print(json.dumps(res))
    print()
    if args.write:
        print(f"{'customers':>10} {'events':>11} {'features s':>10} {'CPU s':>7} {'peak RSS MB':>11} {'features peak MB':>16}")
        for r in rows:
            print(f"{r['customers']:>10,} {r['events']:>11,} {r['features_s']:>10} {r['features_cpu_s']:>7} "
                  f"{r['peak_rss_mb']:>11,} {r['features_peak_rss_mb'] or '-':>16}")
        return
    print(f"{'customers':>10} {'events':>11} {'features s':>10} {'us/cust':>8} {'peak RSS MB':>11} "
          f"{'naive us/cust':>13} {'speedup':>8} {'online ms (matrix/frame)':>25}")
    print("(online: median of 180 one-customer x 50-offer calls; matrix = prepared offers, no DataFrame)")
    for r in rows:
        print(f"{r['customers']:>10,} {r['events']:>11,} {r['features_s']:>10} {r['us_per_customer']:>8} "
              f"{r['peak_rss_mb']:>11,} {r.get('naive_us_per_customer', '-'):>13} "
              f"{str(r.get('speedup_vs_naive_per_customer', '-')) + 'x':>8} "
              f"{str(r['online_candidate_matrix_median_ms']) + ' / ' + str(r['online_candidate_frame_median_ms']):>25}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"growth: {last['customers'] / first['customers']:.1f}x customers -> "
              f"{last['features_s'] / first['features_s']:.1f}x time")


if __name__ == "__main__":
    main()
