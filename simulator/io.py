"""From simulator arrays to the five contract tables and the ground truth, and onto disk.

Id columns are built from integer codes through Arrow dictionaries, so ten million events never
become ten million Python strings. `DIR/truth/` holds what nbo's features and models never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from nbo.data import Dataset, write_dataset, write_table
from nbo.errors import NboError
from simulator.config import REGIONS, SEGMENTS
from simulator.world import DAY
from nbo.vocab import (
    AGE_BANDS,
    CONTACT_CHANNELS,
    EVENT_CHANNELS,
    EVENT_TYPES,
    LIFECYCLE_STAGES,
    NO_OFFER_REASONS,
    OUTCOMES,
)

if TYPE_CHECKING:  # the type only: the engine imports this module, not the reverse
    from simulator.engine import Simulator

STR = pd.StringDtype("pyarrow", na_value=np.nan)
TRUTH_DIR = "truth"


def _strings(codes: np.ndarray, names: list[str] | tuple[str, ...]) -> pd.Series:
    """A `str` column from integer codes into `names`; negative codes become empty."""
    codes = np.asarray(codes)
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask if mask.any() else None)
    arr = pa.DictionaryArray.from_arrays(indices, pa.array(list(names), pa.string())).cast(pa.string())
    return pd.Series(pd.array(arr, dtype=STR))


def _ts(sim: Simulator, seconds: np.ndarray) -> pd.Series:
    """Timestamps (tz-naive UTC, ns) from seconds since the period start."""
    start = np.datetime64(pd.Timestamp(sim.config.start).to_datetime64(), "s")
    return pd.Series((start + np.asarray(seconds, dtype=np.int64).astype("timedelta64[s]")).astype("datetime64[ns]"))


def customers_frame(sim: Simulator) -> pd.DataFrame:
    pop = sim.population
    return pd.DataFrame(
        {
            "customer_id": pd.Series(sim.customer_ids, dtype=STR),
            "signup_ts": _ts(sim, pop.signup_sec),
            "region": _strings(pop.region, REGIONS),
            "age_band": _strings(pop.age_band, AGE_BANDS),
            "acquisition_channel": _strings(pop.acquisition_channel, EVENT_CHANNELS),
            "loyalty_member": pop.loyalty_member,
        }
    )


def consents_frame(sim: Simulator) -> pd.DataFrame:
    log = sim.consent_log()
    order = np.lexsort((log.channel, log.customer, log.ts))
    return pd.DataFrame(
        {
            "customer_id": _strings(log.customer[order], sim.customer_ids),
            "channel": _strings(log.channel[order], CONTACT_CHANNELS),
            "granted": log.granted[order],
            "ts": _ts(sim, log.ts[order]),
        }
    )


def events_frame(sim: Simulator) -> pd.DataFrame:
    ev = sim.event_log()
    return pd.DataFrame(
        {
            "customer_id": _strings(ev.customer, sim.customer_ids),
            "ts": _ts(sim, ev.ts),
            "channel": _strings(ev.channel, EVENT_CHANNELS),
            "type": _strings(ev.type, EVENT_TYPES),
            "category": _strings(ev.category, sim.config.categories),
            "product_id": _strings(ev.product, sim.products.names(sim.config.categories)),
            "amount": ev.amount,
        }
    )


def decision_ids(sim: Simulator, numbers: np.ndarray) -> pd.Series:
    """`d-<seed>-<9-digit number>`, built in Arrow."""
    text = pc.utf8_lpad(pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()), width=9, padding="0")
    return pd.Series(pd.array(pc.binary_join_element_wise(f"d-{sim.seed}-", text, ""), dtype=STR))


def contacts_frame(sim: Simulator) -> pd.DataFrame:
    log = sim.contact_log()
    outcome_ts = _ts(sim, np.where(log.outcome_ts < 0, 0, log.outcome_ts))
    outcome_ts[log.outcome_ts < 0] = pd.NaT
    return pd.DataFrame(
        {
            "decision_id": decision_ids(sim, log.decision),
            "customer_id": _strings(log.customer, sim.customer_ids),
            "offer_id": _strings(log.offer, sim.catalogue.offer_id),
            "channel": _strings(log.channel, CONTACT_CHANNELS),
            "ts": _ts(sim, log.ts),
            "propensity": log.propensity.astype(np.float64),
            "outcome": _strings(log.outcome, OUTCOMES),
            "outcome_ts": outcome_ts,
        }
    )


def no_offers_frame(sim: Simulator) -> pd.DataFrame:
    """The decisions without contact (`no_offers` table), in time order."""
    log = sim.no_offer_log()
    order = np.lexsort((log.decision, log.ts))
    return pd.DataFrame(
        {
            "decision_id": decision_ids(sim, log.decision[order]),
            "customer_id": _strings(log.customer[order], sim.customer_ids),
            "channel": _strings(log.channel[order], CONTACT_CHANNELS),
            "ts": _ts(sim, log.ts[order]),
            "reason": _strings(log.reason[order], NO_OFFER_REASONS),
            "propensity": log.propensity[order].astype(np.float64),
        }
    )


def dataset(sim: Simulator) -> Dataset:
    """The contract tables of what has been simulated so far (`no_offers` only when the logging
    policy logged decisions without contact: a world without holdouts writes the five tables)."""
    logged = bool(sim.config.holds_out or len(sim.no_offer_log().decision))
    return Dataset(
        customers=customers_frame(sim),
        consents=consents_frame(sim),
        events=events_frame(sim),
        offers=sim.catalogue.to_frame(sim.config),
        contacts=contacts_frame(sim),
        no_offers=no_offers_frame(sim),
        absent_tables=() if logged else ("no_offers",),
    )


def customers_truth(sim: Simulator) -> pd.DataFrame:
    """Latent traits and fate of every customer."""
    pop, st, cats = sim.population, sim.state, sim.config.categories
    churn_ts = _ts(sim, np.where(st.churned, (st.churn_day.astype(np.int64) + 1) * DAY, 0))
    churn_ts[~st.churned] = pd.NaT
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(sim.customer_ids, dtype=STR),
            "segment": _strings(pop.segment, SEGMENTS),
            **{f"affinity_{c}": pop.affinity[:, i] for i, c in enumerate(cats)},
            "price_sensitivity": pop.price_sensitivity,
            "activity_rate": pop.activity,
            "online_share": pop.online_share,
            "app_share": pop.app_share,
            **{f"fatigue_{c}": pop.fatigue_sensitivity[:, i] for i, c in enumerate(CONTACT_CHANNELS)},
            "churn_proneness": pop.churn_proneness,
            "contact_intensity": pop.contact_intensity,
            "churn_ts": churn_ts,
            "lifecycle_end": _strings(st.lifecycle, LIFECYCLE_STAGES),
        }
    )
    if pop.hour_profile.size:  # send hours: the true engagement per UTC hour, and its best hour
        for h in range(24):
            frame[f"engagement_h{h:02d}"] = pop.hour_profile[:, h]
        frame["best_hour"] = pop.hour_profile.argmax(1).astype(np.int64)
    return frame


def contacts_truth(sim: Simulator) -> pd.DataFrame:
    """Per contact: the true acceptance probability and the lifecycle the policy saw; in a world
    with cannibalisation or incentives also the incremental truth (`simulator.truth.Effect`)."""
    log = sim.contact_log()
    frame = pd.DataFrame(
        {
            "decision_id": decision_ids(sim, log.decision),
            "offer_id": _strings(log.offer, sim.catalogue.offer_id),
            "p_accept": log.p_accept.astype(np.float64),
            "lifecycle": _strings(log.lifecycle, LIFECYCLE_STAGES),
        }
    )
    if sim.config.incremental:
        frame["p_organic"] = log.p_organic.astype(np.float64)
        frame["bought_anyway"] = log.anyway.astype(bool)
        frame["incremental_value"] = log.incremental_value.astype(np.float64)
    return frame


def check_out_dir(out: Path, fmt: str) -> None:
    """Refuse an output directory we cannot write, or one holding the other format's tables."""
    if fmt not in ("parquet", "csv"):
        raise NboError(f"unknown format {fmt!r}; use parquet or csv")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".nbo-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise NboError(f"cannot write to output directory {out}: {exc.strerror or exc}") from None
    other = "csv" if fmt == "parquet" else "parquet"
    clash = sorted(p.name for p in out.glob(f"*.{other}") if p.stem in ("customers", "consents", "events", "offers", "contacts"))
    if clash:
        raise NboError(f"{out} already holds {', '.join(clash)}; use another directory or --format {other}")


def write_simulation(sim: Simulator, out: Path | str, fmt: str = "parquet") -> None:
    """Write the five tables (in `fmt`) and `truth/` (always Parquet) to `out`."""
    out = Path(out)
    check_out_dir(out, fmt)
    write_dataset(dataset(sim), out, fmt=fmt)
    truth = out / TRUTH_DIR
    write_table(customers_truth(sim), truth / "customers_truth.parquet")
    write_table(contacts_truth(sim), truth / "contacts_truth.parquet")
    write_table(sim.daily(), truth / "daily.parquet")
    (truth / "config.json").write_text(
        json.dumps({"seed": sim.seed, **sim.config.model_dump(
            mode="json", exclude=None if sim.config.send_hours else set(sim.config.SEND_HOUR_KEYS))},
            indent=2, sort_keys=True) + "\n"
    )
