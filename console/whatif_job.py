"""One what-if job: `python -m console.whatif_job DIR` (started by `console.whatif.WhatIfJobs`).

Reads `DIR/request.json`, `DIR/current.toml` and `DIR/draft.toml`; runs the closed loop
(`evaluation.policy_sim.run_policy`) for the policy in force and for the draft on the same
simulated customers (same seed); writes `DIR/phase.txt` as it goes, then `DIR/result.json` and
`DIR/chart.txt` (the comparison as an SVG data URI), or `DIR/error.txt` with one line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

#: The simulated world of a what-if (small: it must answer within a minute or two on 2 cores).
TRAIN_DAYS = 60
NUM_BOOST_ROUND = 60
ORGANIC_MARGIN = 0.3
#: Off-policy evaluation reads the logged decisions of the last OPE_DAYS days of the contacts table,
#: at most the latest MAX_OPE_DECISIONS of them (measured: ~1,000 decisions, both policies, ~58 s on
#: 2 busy cores; the estimator scores decision by decision).
OPE_DAYS = 7
MAX_OPE_DECISIONS = 800


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run(work: Path) -> dict[str, object]:
    from console.charts import comparison_chart
    from console.whatif import WhatIfRequest
    from evaluation.policy_sim import run_policy, train_on_logging_run
    from serving.policy import parse_policy
    from simulator import SimConfig

    started = time.monotonic()
    raw = json.loads((work / "request.json").read_text(encoding="utf-8"))
    draft_text = (work / "draft.toml").read_text(encoding="utf-8")
    request = WhatIfRequest.model_validate({**raw, "draft": draft_text})
    current = parse_policy((work / "current.toml").read_text(encoding="utf-8"), "the policy in force")
    draft = parse_policy(draft_text, "draft")
    if request.method == "ope":
        service = json.loads((work / "service.json").read_text(encoding="utf-8"))
        return run_ope(work, raw, current, draft, service, started)
    config = SimConfig(customers=request.customers, days=request.days, organic_margin=ORGANIC_MARGIN)
    trained = None
    if request.scorer == "nbo":
        _write(work / "phase.txt", f"training a propensity model on a {TRAIN_DAYS}-day logging run (1 of 3)")
        trained = train_on_logging_run(config, request.seed + 1, TRAIN_DAYS, NUM_BOOST_ROUND)
    steps = 3 if trained is not None else 2
    runs = []
    for i, (label, policy) in enumerate((("policy in force", current), ("draft", draft)), start=steps - 1):
        _write(work / "phase.txt", f"simulating {request.days} days of {request.customers} customers under the "
                                   f"{label} ({i} of {steps})")
        runs.append((label, run_policy(request.scorer, config, request.seed, policy, trained)))
    rows = {label: r.row() for label, r in runs}
    chart = comparison_chart([r.daily for _, r in runs], [label for label, _ in runs])
    result = {"request": raw, "rows": rows, "elapsed_s": round(time.monotonic() - started, 1),
              "trained": {"rows": trained.train_rows, "auc": round(trained.valid_auc, 3)} if trained else None}
    _write(work / "chart.txt", chart)
    _write(work / "result.json", json.dumps(result))
    return result


def run_ope(work: Path, raw: dict, current: object, draft: object, service: dict, started: float) -> dict[str, object]:
    """Both policies with the champion propensity model, off-policy, on the last `OPE_DAYS` days of
    logged decisions (`evaluation.evaluate.evaluate`: IPS, SNIPS, DR with 95 % intervals)."""
    import pandas as pd

    from console.charts import ope_chart
    from evaluation.evaluate import evaluate
    from models.registry import load_model
    from models.tracking import PROPENSITY_MODEL, resolve_tracking
    from nbo.data import load_dataset
    from nbo.errors import NboError

    if not service.get("data_dir"):
        raise NboError("no data directory: off-policy evaluation needs the service's logged decisions")
    _write(work / "phase.txt", "reading the logged decisions and the champion (1 of 3)")
    data = load_dataset(service["data_dir"])
    if data.contacts.empty:
        raise NboError("the data directory has no logged contacts to evaluate on")
    client = resolve_tracking(service.get("tracking_uri")).activate()
    model = load_model(client, PROPENSITY_MODEL)
    final = data.contacts.loc[data.contacts["outcome"] != "pending", "ts"].sort_values()
    if final.empty:
        raise NboError("no logged decisions with a final outcome to evaluate on")
    since = max(data.contacts["ts"].max() - pd.Timedelta(days=OPE_DAYS), final.iloc[max(len(final) - MAX_OPE_DECISIONS, 0)])
    results = {}
    for i, (label, policy) in enumerate((("policy in force", current), ("draft", draft)), start=2):
        _write(work / "phase.txt", f"off-policy estimates of {model.label} under the {label} on the decisions "
                                   f"logged since {since:%Y-%m-%d} ({i} of 3)")
        results[label] = evaluate(data, model, policy, since=since)  # type: ignore[arg-type]
    first = next(iter(results.values()))
    rows: dict[str, dict[str, object]] = {"logged": {f"{r}_observed": round(e.value, 4) for r, e in first.logged.items()}}
    for label, ev in results.items():
        pe = ev.candidate
        row: dict[str, object] = {}
        for reward in ("value", "acceptance"):
            dr = pe.estimates[reward]["dr"]
            row |= {f"{reward}_dr": round(dr.value, 4), f"{reward}_dr_low": round(dr.low, 4),
                    f"{reward}_dr_high": round(dr.high, 4), f"{reward}_snips": round(pe.estimates[reward]["snips"].value, 4)}
        row |= {"offer_rate": round(pe.offer_rate, 4), "effective_sample_size": round(pe.diagnostics.ess, 1),
                "warnings": "; ".join(pe.warnings()) or "none"}
        rows[label] = row
    chart = ope_chart({label: ev.candidate.estimates for label, ev in results.items()}, first.logged)
    result = {"request": raw, "method": "ope", "model": model.label, "decisions": first.n_decisions,
              "since": str(first.since), "until": str(first.until), "rows": rows,
              "elapsed_s": round(time.monotonic() - started, 1)}
    _write(work / "chart.txt", chart)
    _write(work / "result.json", json.dumps(result))
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m console.whatif_job DIR", file=sys.stderr)
        return 2
    import signal

    from console.whatif import TIMEOUT_S

    def too_long(signum: int, frame: object) -> None:
        raise TimeoutError(f"stopped after {TIMEOUT_S:.0f} s (limit)")

    work = Path(argv[0])
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(int(TIMEOUT_S))
    try:
        run(work)
    except Exception as exc:  # noqa: BLE001 - the page shows one line; the traceback is in job.log
        import traceback

        traceback.print_exc()
        _write(work / "error.txt", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
