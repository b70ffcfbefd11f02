"""Mutation testing of the cap code (issue 19 item 13): `make mutation`. Slow (~15 min), not in CI.

1. mutmut (3.x) mutates `serving/policy.py`, `serving/caps.py`, `serving/contact_store/base.py`
   and `serving/contact_store/consent.py` and runs, for each mutant, the tests of TESTS that reach
   the mutated function.
2. The hand-written mutants of the Redis Lua scripts (`lua_mutants.py`) are run one by one
   against the Redis tests of TESTS (`-m redis`).

Everything happens in a copy of the tree under `.scratch/mutation/` (git-ignored), so the
working tree is never changed and mutmut's configuration stays out of pyproject.toml. Prints
each survivor and the scores; `--out FILE` also writes them as JSON. Exit status 0 (a survivor is
a finding, not an error), 2 when the unmutated tests fail.

    .venv/bin/python tests/serving/mutation/mutate.py [--only python|lua] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lua_mutants import LUA_MUTANTS  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
MUTATED = ["serving/policy.py", "serving/caps.py", "serving/contact_store/base.py", "serving/contact_store/consent.py"]
LUA_FILE = "serving/contact_store/redis_store.py"
TESTS = [
    "tests/serving/test_policy.py",
    "tests/serving/test_quiet_hours.py",
    "tests/serving/test_contact_store.py",
    "tests/serving/test_contact_history.py",
    "tests/serving/test_cap_edges.py",
    "tests/serving/test_feedback_order.py",
    "tests/serving/test_consent.py",
    "tests/serving/test_caps.py",
]
MUTMUT_CONFIG = f"""

[tool.mutmut]
source_paths = ["serving"]
only_mutate = {json.dumps(MUTATED)}
also_copy = {{also_copy}}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
pytest_add_cli_args_test_selection = {json.dumps(TESTS)}
"""


def _copy_tree(dest: Path) -> None:
    """The working tree as it is (committed or not; git-ignored files left out) into `dest`."""
    if dest.exists():
        shutil.rmtree(dest)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_mutmut(work: Path) -> dict[str, object]:
    """mutmut over MUTATED; returns counts per status and the survivors with their diffs."""
    _copy_tree(work)
    others = sorted(p.name for p in work.iterdir() if p.name not in ("serving", "tests") and not p.name.startswith("."))
    with (work / "pyproject.toml").open("a") as f:
        f.write(MUTMUT_CONFIG.replace("{also_copy}", json.dumps(others)))
    mutmut = [sys.executable, "-m", "mutmut"]
    env = {**os.environ, "PYTHONPATH": str(work)}
    started = time.monotonic()
    subprocess.run([*mutmut, "run"], cwd=work, env=env, stdout=subprocess.DEVNULL, check=False)
    listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True,
                             text=True, check=False).stdout
    statuses: dict[str, str] = dict(re.findall(r"^\s+(\S+): (.+)$", listing, flags=re.M))
    if not statuses:
        raise SystemExit(f"mutmut produced no results; see {work}")
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    if counts.get("killed", 0) == 0:
        raise SystemExit(f"mutmut killed nothing: the clean test run probably failed; see {work}")
    survivors = []
    for name, status in statuses.items():
        if status != "killed":
            diff = subprocess.run([*mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True,
                                  check=False).stdout
            lines = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
            survivors.append({"mutant": name, "status": status, "diff": lines})
    return {"counts": counts, "total": len(statuses), "killed": counts.get("killed", 0),
            "seconds": round(time.monotonic() - started), "survivors": survivors}


def _pytest(work: Path) -> int:
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "redis", *TESTS]
    env = {**os.environ, "PYTHONPATH": str(work)}
    return subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode


def run_lua(work: Path) -> dict[str, object]:
    """Each hand-written Lua mutant against the Redis tests."""
    _copy_tree(work)
    target = work / LUA_FILE
    original = target.read_text()
    started = time.monotonic()
    if _pytest(work) != 0:
        print("the unmutated Redis tests fail: no mutation score", file=sys.stderr)
        raise SystemExit(2)
    results = []
    for m in LUA_MUTANTS:
        if original.count(m.old) != 1:
            raise SystemExit(f"Lua mutant {m.name!r}: its text occurs {original.count(m.old)} times in {LUA_FILE}")
        target.write_text(original.replace(m.old, m.new))
        killed = _pytest(work) != 0
        results.append({"mutant": m.name, "killed": killed})
        print(f"  {'killed  ' if killed else 'SURVIVED'} {m.name}", flush=True)
    target.write_text(original)
    return {"total": len(results), "killed": sum(r["killed"] for r in results),
            "seconds": round(time.monotonic() - started),
            "survivors": [r["mutant"] for r in results if not r["killed"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["python", "lua"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scratch = ROOT / ".scratch" / "mutation"
    report: dict[str, object] = {}
    if args.only in (None, "python"):
        print(f"mutmut over {', '.join(MUTATED)} ...", flush=True)
        py = run_mutmut(scratch / "python")
        report["python"] = py
        for s in py["survivors"]:  # type: ignore[attr-defined]
            print(f"  {s['status']}: {s['mutant']}\n" + "\n".join(f"      {ln}" for ln in s["diff"]))
        print(f"python: {py['killed']}/{py['total']} killed ({100 * py['killed'] / py['total']:.1f} %), "
              f"{py['counts']}, {py['seconds']} s")
    if args.only in (None, "lua"):
        print(f"Lua mutants of {LUA_FILE} ...", flush=True)
        lua = run_lua(scratch / "lua")
        report["lua"] = lua
        print(f"lua: {lua['killed']}/{lua['total']} killed ({100 * lua['killed'] / lua['total']:.1f} %), "
              f"{lua['seconds']} s")
    if len(report) == 2:
        killed = report["python"]["killed"] + report["lua"]["killed"]  # type: ignore[index]
        total = report["python"]["total"] + report["lua"]["total"]  # type: ignore[index]
        print(f"all: {killed}/{total} killed ({100 * killed / total:.1f} %)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
