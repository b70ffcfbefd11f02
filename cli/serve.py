"""`nbo serve`: the real-time decision service (BentoML) on a host and port.

The settings travel to BentoML's worker processes in the environment (`NBO_SERVICE_SETTINGS`,
plus `BENTOML_CONFIG_OVERRIDES` for workers, timeout and access log); API keys come from
`NBO_API_KEYS` / `NBO_API_KEYS_FILE` and are never written anywhere by this command.
`run_demo_service` is what `nbo demo` calls at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import typer

from cli._app import app, user_errors
from nbo.errors import NboError

#: Workers per service. Measured on 2 cores (docs/service.md): 2 workers hold p99 at higher rates.
DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_S = 2.0
#: Longest wait on the contact store per call (SQLite busy timeout, Redis socket timeout): a hung
#: store turns into a degraded answer well within the request timeout (docs/service.md §2).
DEFAULT_STORE_TIMEOUT_S = 0.5
#: Seconds between WAL checkpoints of the SQLite store, from a background thread of each worker
#: (not on the request that commits past 1,000 pages: measured, docs/service.md §7).
DEFAULT_STORE_CHECKPOINT_S = 0.5
#: MiB of SQLite page cache per store connection of a worker. A connection's cache fills with the
#: pages it writes (the event log's, under `POST /events`) up to its size, so with SQLite's 64 MB a
#: worker's heap grew with the number of events posted; with 8 it is flat once full, and ingestion
#: and decisions measured the same (reads go through the memory map; docs/service.md, "Memory").
DEFAULT_STORE_CACHE_MIB = 8
#: Most /recommend requests a worker decides in one pass (`serving.guard.Batcher`; 1: one at a
#: time). Blocks form only from requests that arrive while a worker decides (docs/service.md §7).
DEFAULT_MAX_BATCH = 32
SERVICE_TARGET = "serving.service:Recommender"
#: The same service with the console mounted at /console (docs/console.md): what `nbo serve` starts.
CONSOLE_TARGET = "console.service:Recommender"
SERVICE_NAME = "nbo"
#: Paths OpenTelemetry's middleware skips: all of them (a regular expression per entry).
TRACING_EXCLUDED = ["."]
#: Under `--state-dir`: one private BENTOML_HOME per `nbo serve` (docs/service.md §6).
BENTOML_HOMES = "bentoml"
#: The file that marks a BENTOML_HOME as created by `nbo serve`, with the creating process.
HOME_OWNER_FILE = "nbo-serve-owner.json"


def service_settings(
    data: Path,
    features: Path,
    tracking_uri: str | None,
    policy: Path | None,
    store: str,
    state_dir: Path,
    reload_interval_s: float = 60.0,
    max_body_bytes: int = 16 * 1024,
    clock_start: datetime | None = None,
    store_timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
    request_timeout_s: float = DEFAULT_TIMEOUT_S,
    live_max_past_days: float = 365.0,
    live_max_skew_s: float = 300.0,
    max_events_body_bytes: int = 1024 * 1024,
    live_refresh_s: float = 60.0,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> dict[str, object]:
    """The JSON-able `ServiceSettings` (checked here so mistakes fail before any worker starts).

    Also imports the data's contact history into the store, once for all workers (`seed_contact_store`)."""
    from serving.settings import EngineSettings, latest_features_file
    from serving.service_config import ServiceSettings

    data = data.resolve()
    if not data.is_dir():
        raise NboError(f"--data {data} is not a directory")
    features_file = latest_features_file(features.resolve())
    if not features_file.exists():
        raise NboError(f"--features {features_file} does not exist (run `nbo features`)")
    from cli._preflight import check_service_inputs

    # Bad data: one line and exit 2, not a crashing worker. The tables read are kept for the
    # workers (written once every check has passed: a refused start writes nothing).
    keep_tables: list[Callable[[], None]] = []
    tables = check_service_inputs(data, features_file, store, cache=state_dir.resolve() / "tables", defer=keep_tables)
    from serving.policy import load_policy

    if policy is not None:
        load_policy(policy)  # raises ConfigError naming the key
        policy = policy.resolve()
    if not store.startswith(("redis://", "rediss://", "unix://")):
        store = str(Path(store.removeprefix("sqlite:///")).resolve())
    from features import materialised_meta

    now = clock_start if clock_start is not None else datetime.now(UTC).replace(tzinfo=None)
    for line in clock_warnings(now, tables["offers"], materialised_meta(features_file)["as_of"], clock_start is not None):
        typer.echo(f"warning: {line}", err=True)
    if tracking_uri is None:
        from models.tracking import resolve_tracking

        tracking_uri = resolve_tracking(None).uri
    engine = EngineSettings(
        data_dir=data, features_path=features_file, tracking_uri=tracking_uri, policy_path=policy, store=store,
        store_timeout_s=store_timeout_s, store_checkpoint_s=DEFAULT_STORE_CHECKPOINT_S,
        store_cache_mib=DEFAULT_STORE_CACHE_MIB,
        live_max_past_days=live_max_past_days, live_max_skew_s=live_max_skew_s, live_refresh_s=live_refresh_s,
        # Compiled champions are shared by the workers and kept across restarts (models/compiled.py).
        compiled_cache=state_dir.resolve() / "compiled",
        # Champions loaded once are read from their pickles at the next start, and the aliases
        # from the registry's SQLite file: a start needs no MLflow (models/prepared.py).
        prepared_champions=state_dir.resolve() / "champions",
        table_cache=state_dir.resolve() / "tables",
        seed_history=False,  # seeded once, by `seed_contact_store` below, not by each worker
    )
    if policy is not None and load_policy(policy).arbitration.objective == "uplift":
        from serving.engine import require_uplift_champion

        require_uplift_champion(engine.tracking_uri, engine.uplift_model, engine.alias)  # no uplift champion: one line and exit 2, not a worker that dies
    seed_contact_store(engine, policy, tables)
    for keep in keep_tables:
        keep()
    settings = ServiceSettings(
        engine=json.loads(engine.model_dump_json()),
        reload_interval_s=reload_interval_s,
        max_body_bytes=max_body_bytes,
        max_events_body_bytes=max_events_body_bytes,
        state_dir=state_dir.resolve(),
        clock_start=clock_start,
        clock_anchor=time.time() if clock_start is not None else None,
        request_timeout_s=request_timeout_s,
        max_batch=max_batch,
    )
    return json.loads(settings.model_dump_json())


#: Features older or newer than the service's clock by more than this are named in a warning.
FEATURES_CLOCK_GAP_DAYS = 7


def clock_warnings(now: datetime, offers: object, features_as_of: object, simulated: bool) -> list[str]:
    """What is wrong with the service's clock for this data, in plain words (empty: nothing).

    On a simulated world the real clock is months or years after the data: every offer is out of
    its validity window and `/recommend` answers `offers: []` for everyone, and the features describe
    customers as they were long ago. Both were silent; `--clock-start` is the fix."""
    import pandas as pd

    table = offers  # the offers table of the data directory
    ts = pd.Timestamp(now)
    found: list[str] = []
    fix = "" if simulated else "; on simulated or past data pass --clock-start (e.g. the features' date)"
    if len(table):  # type: ignore[arg-type]
        valid = (pd.to_datetime(table["valid_from"]) <= ts) & (ts <= pd.to_datetime(table["valid_to"]))  # type: ignore[index]
        if not valid.any():
            first, last = pd.to_datetime(table["valid_from"]).min(), pd.to_datetime(table["valid_to"]).max()  # type: ignore[index]
            found.append(f"the service's clock ({ts:%Y-%m-%d %H:%M} UTC) is outside every offer's validity "
                         f"({first:%Y-%m-%d} to {last:%Y-%m-%d}): /recommend will answer offers: [] for everyone{fix}")
    gap = (ts - pd.Timestamp(features_as_of)).total_seconds() / 86400  # type: ignore[arg-type]
    if abs(gap) > FEATURES_CLOCK_GAP_DAYS:
        when = "after" if gap > 0 else "before"
        found.append(f"the service's clock ({ts:%Y-%m-%d}) is {abs(gap):.0f} days {when} the features' date "
                     f"({pd.Timestamp(features_as_of):%Y-%m-%d}): decisions use customers as they were then{fix}")  # type: ignore[arg-type]
    return found


def seed_contact_store(engine: object, policy: Path | None, tables: dict[str, object]) -> None:
    """Import the data's contact history into the store once, before the workers start (each worker
    used to do it: ~2 s each, two processes writing the same store at once). `tables`: the data
    directory's tables the checks read (contacts and offers)."""
    from serving.engine import seed_store
    from serving.policy import ContactPolicy, load_policy
    from serving.settings import open_store

    if "contacts" not in tables:
        return  # no contact history in the data
    store = open_store(engine.store, engine.store_horizon_days, engine.store_timeout_s,  # type: ignore[attr-defined]
                       engine.store_checkpoint_s)  # type: ignore[attr-defined]
    try:
        store.check_policy(load_policy(policy) if policy is not None else ContactPolicy())
        seed_store(store, tables["contacts"], tables["offers"])  # type: ignore[arg-type]
    finally:
        store.close()


def service_command(host: str, port: int, console: bool = True) -> list[str]:
    root = Path(__file__).resolve().parents[1]  # the repository (cli/serve.py moved up one level)
    target = CONSOLE_TARGET if console else SERVICE_TARGET
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port),
            "--working-dir", str(root)]


def private_bentoml_home(state_dir: Path) -> Path:
    """A BENTOML_HOME of this server's own: `STATE_DIR/bentoml/serve-<pid>-<random>`.

    BentoML keeps its Prometheus multiprocess files in `$BENTOML_HOME/prometheus_multiproc_dir`
    and wipes that directory at every start: with one home for every server of a user (the
    default `~/bentoml`), starting a server erased the metrics of the others. Each `nbo serve`
    gets a new directory, marked with an owner file naming the creating process; directories
    that carry the mark of a process no longer running are removed here (left by a server that
    stopped or was killed). Nothing else is ever removed, and symlinks are not followed.
    """
    import psutil

    root = Path(state_dir).resolve() / BENTOML_HOMES
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.is_symlink() or not old.is_dir() or not old.name.startswith("serve-"):
            continue
        try:
            owner = json.loads((old / HOME_OWNER_FILE).read_text(encoding="utf-8"))
            alive = psutil.pid_exists(owner["pid"]) and abs(psutil.Process(owner["pid"]).create_time() - owner["started"]) < 1
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue  # not ours, or unreadable: leave it
        if not alive:
            shutil.rmtree(old, ignore_errors=True)
    home = Path(tempfile.mkdtemp(prefix=f"serve-{os.getpid()}-", dir=root))
    owner = {"pid": os.getpid(), "started": psutil.Process().create_time()}
    (home / HOME_OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return home


def service_env(settings: dict[str, object], workers: int, timeout_s: float, access_log: bool,
                base: dict[str, str] | None = None, bentoml_home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if bentoml_home is not None:
        env["BENTOML_HOME"] = str(bentoml_home)
    env["NBO_SERVICE_SETTINGS"] = json.dumps(settings)
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(
        {"services": {SERVICE_NAME: {"workers": workers, "traffic": {"timeout": timeout_s},
                                     "logging": {"access": {"enabled": access_log}},
                                     # No trace is sampled (sample rate 0), yet OpenTelemetry's ASGI
                                     # middleware builds three spans per request: skip it (measured).
                                     "tracing": {"excluded_urls": TRACING_EXCLUDED}}}}
    )
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 120.0,
               progress: Callable[[float], None] | None = None, every_s: float = 5.0) -> float:
    """Poll `url/readyz` until 200 and return the seconds it took; raise NboError if the process
    dies or time runs out. `progress(seconds so far)` is called every `every_s` while waiting."""
    import httpx

    began = time.monotonic()
    deadline = began + timeout_s
    told = began
    while time.monotonic() < deadline:
        if progress is not None and time.monotonic() - told >= every_s:
            told = time.monotonic()
            progress(told - began)
        if proc is not None and proc.poll() is not None:
            raise NboError(f"the service exited with status {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise NboError(f"the service at {url} was not ready after {timeout_s:.0f} s")


@app.command()
@user_errors
def serve(
    data: Path = typer.Option(..., "--data", help="Data directory (offers, consents, contacts tables)."),
    features: Path = typer.Option(Path("features"), "--features",
                                  help="Materialised features file, or a directory: the latest file in it."),
    tracking_uri: str = typer.Option(None, "--tracking-uri",
                                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)."),
    policy: Path = typer.Option(None, "--policy", help="policy.toml (default: the built-in default policy)."),
    store: str = typer.Option("nbo-contacts.db", "--store", help="Contact store: a SQLite file, or redis://host:port/db."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes the service)."),
    port: int = typer.Option(3000, "--port", min=1, max=65535),
    workers: int = typer.Option(DEFAULT_WORKERS, "--workers", min=1, max=64, help="Worker processes."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", min=0.1, max=60, help="Per-request timeout (s)."),
    reload_interval: float = typer.Option(60.0, "--reload-interval", min=1, help="Seconds between champion checks."),
    max_body_kib: int = typer.Option(16, "--max-body-kib", min=1, max=1024, help="Largest request body (KiB)."),
    clock_start: str = typer.Option(None, "--clock-start",
                                    help="Simulated clock: the service's 'now' starts at this UTC time and advances in real time."),
    state_dir: Path = typer.Option(Path(".nbo-service"), "--state-dir", help="Where workers coordinate reloads."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log", help="BentoML access log (costs latency)."),
    store_timeout: float = typer.Option(DEFAULT_STORE_TIMEOUT_S, "--store-timeout", min=0.01, max=30,
                                        help="Longest wait on the contact store per call (s); then the answer is degraded."),
    accept_volatile_redis: bool = typer.Option(
        False, "--accept-volatile-redis",
        help="Start on a Redis store without persistence (appendonly no, save \"\"): a warning instead of a refusal; "
             "a Redis restart then forgets every cap counter."),
    live_max_past_days: float = typer.Option(
        365.0, "--live-max-past-days", min=0.001,
        help="POST /consents and /events: a time more than this many days before the service's clock is refused (422)."),
    live_max_skew: float = typer.Option(
        300.0, "--live-max-skew", min=0,
        help="POST /consents and /events: a time more than this many seconds after the service's clock is refused (422)."),
    max_events_body_kib: int = typer.Option(1024, "--max-events-body-kib", min=1, max=65536,
                                            help="Largest POST /events body (KiB); other endpoints: --max-body-kib."),
    live_refresh: float = typer.Option(
        60.0, "--live-refresh", min=0.001,
        help="A customer's feature row recomputed with posted events is reused at most this long (s)."),
    max_batch: int = typer.Option(DEFAULT_MAX_BATCH, "--max-batch", min=1, max=256,
                                  help="Most /recommend requests a worker decides in one pass (1: one at a time)."),
    console: bool = typer.Option(True, "--console/--no-console",
                                 help="Serve the marketers' console at /console (login with an API key; docs/console.md)."),
) -> None:
    """Serve POST /recommend, /feedback, /forget, /consents, /events, /customer, /admin/reload (API key
    required) and health/metrics."""
    from serving.service_config import load_api_keys

    if not load_api_keys():
        raise NboError("no API keys: set NBO_API_KEYS (comma-separated) or NBO_API_KEYS_FILE (one key per line)")
    start = None
    if clock_start:
        from cli.options import parse_as_of

        start = parse_as_of(clock_start, "--clock-start").to_pydatetime()
    from cli._preflight import check_redis_persistence

    check_redis_persistence(store, accept_volatile_redis)  # caps that a Redis restart would forget: refused
    settings = service_settings(data, features, tracking_uri, policy, store, state_dir, reload_interval,
                                max_body_kib * 1024, start, store_timeout, timeout, live_max_past_days, live_max_skew,
                                max_events_body_kib * 1024, live_refresh, max_batch)
    env = service_env(settings, workers, timeout, access_log, bentoml_home=private_bentoml_home(state_dir))
    cmd = service_command(host, port, console)
    typer.echo(f"nbo service on http://{host}:{port} ({workers} worker(s)); Ctrl-C stops it", err=True)
    typer.echo("starting: each worker logs 'start: ...' and 'ready in N s'; GET /readyz answers 200 once one is ready",
               err=True)
    if console:
        typer.echo(f"console: http://{host}:{port}/console/ (log in with an API key)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, env)  # BentoML takes over this process: signals reach it directly


def run_demo_service(directory: Path, data_dir: Path, features_path: Path, port: int = 3000,
                     as_of: object | None = None) -> None:
    """Start the service for `nbo demo`, print a ready-to-paste curl and its answer, serve until Ctrl-C."""
    import httpx
    import pandas as pd

    from features import read_materialised

    directory = Path(directory).resolve()
    key = secrets.token_urlsafe(24)
    key_file = directory / "api-key.txt"
    key_file.write_text(key + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    from models.tracking import resolve_tracking

    tracking_uri = resolve_tracking(None, workdir=directory).uri  # where `nbo demo` trained
    # `nbo demo` simulates up to today, so the real clock fits; an older world gets a simulated
    # clock starting at its as_of (otherwise every offer would be out of its validity window).
    clock = None
    if as_of is not None and pd.Timestamp.now(tz="UTC").tz_localize(None) - pd.Timestamp(as_of) > pd.Timedelta(days=2):
        clock = (pd.Timestamp(as_of) + pd.Timedelta(hours=10)).to_pydatetime()
    settings = service_settings(Path(data_dir), Path(features_path), tracking_uri, None,
                                str(directory / "contacts.db"), directory / "service-state", clock_start=clock)
    # The demo has MLflow open already (it just trained): prepare the champions here, so that the
    # workers start without MLflow (models/prepared.py) on this first start too.
    from models.prepared import prepare_champions
    from models.tracking import CHAMPION, MODEL_NAMES

    prepare_champions(resolve_tracking(tracking_uri).activate(), tracking_uri,
                      (MODEL_NAMES["propensity"], MODEL_NAMES["churn"]), CHAMPION,
                      Path(settings["engine"]["prepared_champions"]))  # type: ignore[index]
    env = service_env(settings, DEFAULT_WORKERS, DEFAULT_TIMEOUT_S, access_log=False,
                      bentoml_home=private_bentoml_home(directory / "service-state"))
    env.pop("NBO_API_KEYS", None)
    env["NBO_API_KEYS_FILE"] = str(key_file)
    log_path = directory / "service.log"
    url = f"http://127.0.0.1:{port}"
    typer.secho(f"\n== 5. serve on {url} (log: {log_path})", bold=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(service_command("127.0.0.1", port), env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            typer.echo("   starting 2 workers: each loads the data, features and champion models, then warms up")
            try:
                took = wait_ready(url, proc, timeout_s=180,
                                  progress=lambda t: typer.echo(f"   ... not ready yet ({t:.0f} s; log: {log_path})"))
            except NboError as exc:
                raise NboError(f"{exc}; see {log_path}") from None
            typer.echo(f"   ready in {took:.1f} s (the champions are compiled in the background: faster answers shortly)")
            frame, _ = read_materialised(settings["engine"]["features_path"])  # type: ignore[index]
            active = frame[frame["recency_days"] < 30] if "recency_days" in frame else frame
            customer = str((active if len(active) else frame).index[0])
            body = {"customer_id": customer, "channel": "web", "k": 3,
                    "context": {"page_category": "travel", "device": "mobile"}}
            curl = (f"curl -s -X POST {url}/recommend -H 'Content-Type: application/json' "
                    f"-H \"Authorization: Bearer $(cat {shlex.quote(str(key_file))})\" "
                    f"-d {shlex.quote(json.dumps(body))}")
            answer = httpx.post(f"{url}/recommend", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            typer.echo(f"   API key in {key_file} (as of {pd.Timestamp(as_of).date() if as_of is not None else 'now'})")
            typer.echo(f"   try it:\n\n{curl}\n")
            typer.echo(json.dumps(answer.json(), indent=2))
            typer.echo(f"\n   API page: {url}/ (Authorize with the key), OpenAPI: {url}/docs.json, metrics: {url}/metrics, "
                       f"console: {url}/console/ (log in with the key). Ctrl-C stops the service.")
            proc.wait()
        except KeyboardInterrupt:
            typer.echo("\nstopping the service ...")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
