"""One `nbo score` run: the plans chunk by chunk (pandas, a worker pool, or Spark), their
reservation on the driver, and the work directory that makes a run resumable.

Reservation happens on the driver only, in order, after the chunk's plan is on disk, with one
store call (one SQLite transaction) per group of up to `RESERVE_CHUNKS` chunks
(`serving.batch.reserve`). Layout of the work directory next to the output (`<out>.work/`):

    manifest.json          the job (its arguments and input fingerprints) and its status
    plan-00000.parquet     decisions of chunk 0 before reservation (pandas engine)
    spark-plan/            the same, written by Spark (spark engine)
    part-00000.parquet     chunk 0 after reservation (what the output will hold)
    part-00000.json        chunk 0 is done (written last)

The output appears only once complete (written under a temporary name, then renamed). A real run
keeps `manifest.json` (status `complete`, with the summary) as the campaign's ledger: re-running
it reserves nothing. A dry run removes its work directory at the end.

The decision time `now` (caps, cooldowns, validity, quiet hours, exploration seed) is the
campaign's `as_of`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import MaterialisedRows, materialised_rows
from nbo.errors import NboError
from nbo.contract import TABLES
from serving.batch.customers import SEGMENT_EXCLUDED, compile_segment
from serving.batch.job import BatchJob
from serving.batch.plan import OUTPUT_COLUMNS, PLAN_COLUMNS, PLAN_SCHEMA, models_blob, plan_chunk, write_plan
from serving.engine import naive_utc
from serving.batch.reserve import merge_summaries, reserve_plans, summarise
from serving.batch.spark import run_spark, whole_decisions
from serving.batch.workers import (cached_engine, freeze_startup_objects, keep_freed_memory, one_thread_per_worker,
                                   pool_init, pool_plan_rows)
from serving.settings import EngineSettings, latest_features_file

log = logging.getLogger(__name__)

#: Consecutive chunks reserved in one store call (one SQLite transaction): at 2,000 customers a
#: chunk, 40 chunks reserved 5 at a time took 18.2-18.8 us of CPU per customer instead of 22.2-23.4
#: (fewer commits, each B-tree page dirtied by several chunks written once); the write lock is
#: held for ~0.1-0.3 s per group.
RESERVE_CHUNKS = 5

#: A plan's no-offer reason -> the `no_offers` table's (anything else: the policy had nothing).
HOLDOUT_REASONS = {"control_group": "control", "explore_no_offer": "explore"}


@dataclass
class BatchRun:
    """One `nbo score` run: settings of the engine, the job, where the output goes, how to run."""

    settings: EngineSettings
    job: BatchJob
    out: Path
    customers: frozenset[str] | None = None
    workers: int = 1
    master: str | None = None
    progress: bool = True

    @property
    def work_dir(self) -> Path:
        return self.out.with_name(self.out.name + ".work")

    @property
    def summary_path(self) -> Path:
        return self.out.with_name(self.out.name + ".summary.json")

    def _features_file(self) -> Path:
        return latest_features_file(self.settings.features_path)

    # --------------------------------------------------------------- files
    def _write_json(self, path: Path, payload: object) -> None:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def _write_part(self, i: int, plan: pd.DataFrame, final: pd.DataFrame) -> None:
        """Chunk i as reserved; when the reservation left the plan as it was, a hard link to the
        plan's file (same bytes) instead of writing it again."""
        part, source = self.work_dir / f"part-{i:05d}.parquet", self.work_dir / f"plan-{i:05d}.parquet"
        if final is plan and source.is_file():
            tmp = part.with_name(f".{part.name}.tmp-{os.getpid()}")
            try:
                tmp.unlink(missing_ok=True)
                os.link(source, tmp)
                os.replace(tmp, part)
                return
            except OSError:  # no hard links here: write it
                tmp.unlink(missing_ok=True)
        write_plan(part, final)

    def _manifest(self, status: str, summary: dict[str, object] | None = None) -> None:
        self._write_json(self.work_dir / "manifest.json",
                         {"job": self.job.model_dump(mode="json"), "status": status, "summary": summary})

    def _open_work_dir(self) -> dict[str, object] | None:
        """Create or resume the work dir; the summary when this very job already completed.

        Never writes into, or later empties, a directory nbo did not create: an existing work path
        must be a real directory holding nbo's `manifest.json` (the marker), not a link."""
        manifest_path = self.work_dir / "manifest.json"
        if self.work_dir.is_symlink():
            raise NboError(f"{self.work_dir} is a symbolic link: nbo does not work through a link it did not "
                           "create; remove it or choose another --out")
        if self.work_dir.exists() and not (self.work_dir.is_dir() and _is_manifest(manifest_path)):
            raise NboError(f"{self.work_dir} exists and is not a work directory of nbo (no manifest.json): nbo "
                           "never writes into or empties a folder it did not create; move it or choose another --out")
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("job") != self.job.model_dump(mode="json"):
                raise NboError(
                    f"{self.work_dir} belongs to another run (campaign {manifest.get('job', {}).get('campaign')!r} "
                    "with other arguments or inputs); use another --out, or remove that directory"
                )
            if manifest.get("status") == "complete":
                if not self.out.exists():
                    raise NboError(f"campaign {self.job.campaign!r} completed but {self.out} was removed; its "
                                   f"reservations stand. Remove {self.work_dir} to score it again (nothing is reserved twice)")
                return dict(manifest["summary"])
            log.info("resuming %s", self.work_dir)
            return None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._manifest("running")
        return None

    # --------------------------------------------------------------- plans
    def _pandas_plans(self, bar: object) -> Iterator[list[tuple[int, pd.DataFrame | None]]]:
        """Groups of up to `RESERVE_CHUNKS` consecutive (chunk index, plan or None when the chunk
        is already done), in order."""
        path = self._features_file()
        job_json, settings_json = self.job.model_dump_json(), self.settings.model_dump_json()
        segment = compile_segment(self.job.segment)

        def todo() -> Iterator[tuple[int, pd.DataFrame | None, tuple[int, int] | None]]:
            """(chunk index, its plan if one was saved, else the row range still to plan or None
            when the chunk is done): each worker reads its own rows of the features file."""
            total = materialised_rows(path)
            for i, lo in enumerate(range(0, total, self.job.chunk_rows)):
                hi = min(total, lo + self.job.chunk_rows)
                if (self.work_dir / f"part-{i:05d}.json").exists():
                    bar.update(hi - lo)  # type: ignore[attr-defined]
                    yield i, None, None
                elif (self.work_dir / f"plan-{i:05d}.parquet").exists():
                    bar.update(hi - lo)  # type: ignore[attr-defined]
                    yield i, pq.read_table(self.work_dir / f"plan-{i:05d}.parquet").to_pandas(), None
                else:
                    yield i, None, (lo, hi)

        if self.workers <= 1:
            engine = cached_engine(settings_json)
            reader = MaterialisedRows(path)

            def planned() -> Iterator[tuple[int, pd.DataFrame | None]]:
                for i, plan, rows in todo():
                    if rows is not None:
                        plan = plan_chunk(engine, reader.read(*rows), self.job, segment, self.customers)
                        write_plan(self.work_dir / f"plan-{i:05d}.parquet", plan)
                        bar.update(rows[1] - rows[0])  # type: ignore[attr-defined]
                    yield i, plan

            yield from _groups(planned())
            return

        ctx = mp.get_context("spawn")
        blob = models_blob(cached_engine(settings_json))
        with one_thread_per_worker(), ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=pool_init,
                                                           initargs=(settings_json, blob, self.customers)) as pool:
            window: list[tuple[int, pd.DataFrame | None, Future | None, int]] = []
            source = todo()
            exhausted = False
            while window or not exhausted:
                # Chunks in flight: two per worker beyond the group the driver waits for, so the
                # workers stay busy while it reserves a group.
                while not exhausted and len(window) < 2 * self.workers + RESERVE_CHUNKS:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    i, plan, rows = item
                    fut = None if rows is None else pool.submit(pool_plan_rows, str(path), *rows, job_json,
                                                                 str(self.work_dir / f"plan-{i:05d}.parquet"))
                    window.append((i, plan, fut, 0 if rows is None else rows[1] - rows[0]))
                if not window:
                    break
                group = []
                while window and len(group) < RESERVE_CHUNKS:
                    i, plan, fut, n = window.pop(0)
                    if fut is not None:
                        plan = fut.result()  # the worker wrote its file
                        bar.update(n)  # type: ignore[attr-defined]
                    group.append((i, plan))
                yield group

    def _spark_plans(self, bar: object) -> Iterator[list[tuple[int, pd.DataFrame | None]]]:
        plan_dir = self.work_dir / "spark-plan"
        if not (plan_dir / "_SUCCESS").exists():
            run_spark(self._features_file(), plan_dir, self.settings.model_dump_json(), self.job, self.customers, self.master)
        files = sorted(plan_dir.glob("part-*.parquet"))

        def planned() -> Iterator[tuple[int, pd.DataFrame | None]]:
            for i, plan in enumerate(whole_decisions(files, self.job.chunk_rows)):
                bar.update(int((plan["rank"] <= 1).sum()))  # type: ignore[attr-defined]
                yield i, (None if (self.work_dir / f"part-{i:05d}.json").exists() else plan)

        yield from _groups(planned())

    # --------------------------------------------------------------- run
    def run(self) -> dict[str, object]:
        """Score, reserve (unless dry run), write output and summary; returns the summary."""
        from tqdm import tqdm

        done = self._open_work_dir()
        if done is not None:
            return {**done, "already_complete": True}
        keep_freed_memory()
        if self.settings.compiled_cache is None:  # workers load the forests the driver compiles
            self.settings = self.settings.model_copy(update={"compiled_cache": self.work_dir / "compiled"})
        engine = cached_engine(self.settings.model_dump_json())
        if not self.job.dry_run:
            engine.store.expect_bulk_writes()  # this thread reserves every chunk
        freeze_startup_objects()  # the collector no longer walks start-up's heap at every full pass
        total = materialised_rows(self._features_file())
        with tqdm(total=total, unit=" customers", unit_scale=True, disable=not self.progress, file=sys.stderr,
                  mininterval=1.0, desc=f"score {self.job.campaign}") as bar:
            plans = self._spark_plans(bar) if self.job.engine == "spark" else self._pandas_plans(bar)
            n_parts = 0
            for group in plans:
                n_parts = group[-1][0] + 1
                todo = [(i, plan) for i, plan in group if plan is not None]
                # One store transaction for the group; its part files only once it is committed (a
                # failure before leaves the group's plans to be reserved by the re-run, a kill
                # after it leaves decision ids the re-run finds in the store).
                reserved = reserve_plans(engine, [plan for _, plan in todo], self.job) if todo else []
                for (i, plan), (final, stats) in zip(todo, reserved, strict=True):
                    self._write_part(i, plan, final)
                    self._write_json(self.work_dir / f"part-{i:05d}.json", {**summarise(final), **stats})
        summaries = [json.loads((self.work_dir / f"part-{i:05d}.json").read_text(encoding="utf-8")) for i in range(n_parts)]
        summary = merge_summaries(summaries)
        for key in ("customers_scored", "customers_offered", "offers", "customers_suppressed", "segment_excluded",
                    "already_reserved", "refused_at_reservation"):
            summary.setdefault(key, 0)
        summary.setdefault("expected_value", 0.0)
        summary.setdefault("suppressed_by_reason", {})
        if self.customers is not None:
            summary["customers_unknown"] = len(self.customers) - int(summary["customers_scored"]) - int(summary["segment_excluded"])
        summary.update({
            "campaign": self.job.campaign, "channel": self.job.channel, "as_of": self.job.as_of.isoformat(),
            "k": self.job.k, "dry_run": self.job.dry_run, "engine": self.job.engine, "reserved": not self.job.dry_run,
            "output": str(self.out),
        })
        self._assemble(n_parts)
        if engine.policy.holds_out:  # every decision is logged, those without contact too
            summary["no_offers"] = self._assemble_no_offers(n_parts)
            summary["no_offers_output"] = str(self.no_offers_path)
        self._write_json(self.summary_path, summary)
        if not self.job.dry_run:
            self._manifest("complete", summary)
        # Only what nbo wrote goes (links are removed, never followed); the marker goes last.
        for path in self.work_dir.iterdir():
            if path.name == "manifest.json" or not _is_ours(path.name):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if self.job.dry_run:
            manifest = self.work_dir / "manifest.json"
            manifest.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # not empty: something not nbo's is in it; it stays
                self.work_dir.rmdir()
        return summary

    @property
    def no_offers_path(self) -> Path:
        """`<out stem>.no_offers<suffix>`: the run's decisions without contact (contract table `no_offers`)."""
        return self.out.with_name(f"{self.out.stem}.no_offers{self.out.suffix}")

    def _assemble_no_offers(self, n_parts: int) -> int:
        """Write the decisions that made no contact in the shape of the contract's `no_offers`
        table (customers the segment left out were not decided for); returns how many."""
        frames = []
        for i in range(n_parts):
            frame = pq.read_table(self.work_dir / f"part-{i:05d}.parquet").to_pandas()
            frames.append(frame[frame["offer_id"].isna() & (frame["no_offer"] != SEGMENT_EXCLUDED)])
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(PLAN_COLUMNS))
        reason = rows["no_offer"].map(HOLDOUT_REASONS).fillna("policy")
        table = pd.DataFrame({
            "decision_id": rows["decision_id"].astype(str), "customer_id": rows["customer_id"].astype(str),
            "channel": self.job.channel, "ts": pd.Timestamp(naive_utc(self.job.as_of)), "reason": reason.astype(str),
            "propensity": rows["propensity"].astype(float),
        }, columns=list(TABLES["no_offers"].column_names))
        tmp = self.no_offers_path.with_name(f".{self.no_offers_path.name}.tmp-{os.getpid()}")
        try:
            if self.out.suffix.lower() == ".csv":
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)
            os.replace(tmp, self.no_offers_path)
        finally:
            tmp.unlink(missing_ok=True)
        return len(table)

    def _assemble(self, n_parts: int) -> None:
        """Concatenate the part files into the output (temporary name, then rename)."""
        tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        csv = self.out.suffix.lower() == ".csv"
        schema = PLAN_SCHEMA
        out_schema = pa.schema([schema.field(c) for c in OUTPUT_COLUMNS])
        try:
            writer = None if csv else pq.ParquetWriter(tmp, out_schema, compression="zstd")
            header = True
            for i in range(n_parts):
                table = pq.read_table(self.work_dir / f"part-{i:05d}.parquet")
                frame = table.to_pandas()
                frame = frame[frame["offer_id"].notna()][list(OUTPUT_COLUMNS)]
                if csv:
                    frame.to_csv(tmp, mode="w" if header else "a", header=header, index=False)
                    header = False
                else:
                    writer.write_table(pa.Table.from_pandas(frame, schema=out_schema, preserve_index=False))  # type: ignore[union-attr]
            if csv and header:
                pd.DataFrame(columns=list(OUTPUT_COLUMNS)).to_csv(tmp, index=False)
            if writer is not None:
                writer.close()
            os.replace(tmp, self.out)
        finally:
            tmp.unlink(missing_ok=True)


def _groups(items: Iterator[tuple[int, pd.DataFrame | None]]) -> Iterator[list[tuple[int, pd.DataFrame | None]]]:
    """Consecutive items in groups of up to `RESERVE_CHUNKS`."""
    group: list[tuple[int, pd.DataFrame | None]] = []
    for item in items:
        group.append(item)
        if len(group) == RESERVE_CHUNKS:
            yield group
            group = []
    if group:
        yield group


#: What nbo writes in a work directory (docs: serving/batch/__init__.py); nothing else is removed.
_OURS = re.compile(r"^(plan-\d+\.parquet|part-\d+\.(parquet|json)|spark-plan|compiled|forest-[0-9a-f]+\.bin|\..*\.tmp-\d+|\.forest-.*)$")


def _is_ours(name: str) -> bool:
    return bool(_OURS.match(name))


def _is_manifest(path: Path) -> bool:
    """nbo's marker: a JSON object with the job it was written for."""
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")).get("job"), dict)
    except (OSError, ValueError, AttributeError):
        return False
