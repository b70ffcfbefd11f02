"""API keys (issue 19, item 9): comment lines are comments, short keys are refused at start.

`serving.service_config.load_api_keys` in process, and `nbo serve` through the real CLI (it refuses
before reading any data, so no world is needed). That the keys of a file with comments work over
HTTP, and its comment lines do not, is checked by `test_http.py::test_auth` on a real server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbo.errors import ConfigError
from serving.service_config import load_api_keys

MIN_KEY_CHARS = 16  # the documented minimum (docs/service.md §3)

GOOD = "k" * MIN_KEY_CHARS
OTHER = "another-key-0123456789"


def test_comment_lines_also_indented_are_not_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# first comment\n   # indented-comment-not-a-key\n\t#tab-comment-not-a-key-either\n\n"
                    f"{GOOD}\n  {OTHER}  \n", encoding="utf-8")
    assert load_api_keys({"NBO_API_KEYS_FILE": str(keys)}) == (GOOD.encode(), OTHER.encode())
    assert load_api_keys({"NBO_API_KEYS": f" {GOOD} ,, {OTHER}", "NBO_API_KEYS_FILE": str(keys)}) == (
        GOOD.encode(), OTHER.encode(), GOOD.encode(), OTHER.encode())
    assert load_api_keys({}) == ()


@pytest.mark.parametrize(
    ("environ", "where"),
    [
        ({"NBO_API_KEYS": "x"}, "NBO_API_KEYS item 1"),
        ({"NBO_API_KEYS": f"{GOOD},short-key-15chr"}, "NBO_API_KEYS item 2"),
        ({"NBO_API_KEYS_FILE": "FILE"}, "line 3"),
    ],
)
def test_short_keys_are_refused_naming_where_not_what(tmp_path: Path, environ: dict[str, str], where: str) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# keys\n{GOOD}\n   tiny  \n", encoding="utf-8")
    environ = {k: str(keys) if v == "FILE" else v for k, v in environ.items()}
    with pytest.raises(ConfigError, match=f"{where}: API key shorter than {MIN_KEY_CHARS} characters") as refused:
        load_api_keys(environ)
    assert "tiny" not in str(refused.value) and "short-key-15chr" not in str(refused.value)


def test_an_unreadable_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NBO_API_KEYS_FILE .* cannot be read"):
        load_api_keys({"NBO_API_KEYS_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize("where", ["env", "file", "indented-comment-only"])
def test_nbo_serve_refuses_short_keys_with_one_line_exit_2(tmp_path: Path, where: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NBO_API_KEYS", "NBO_API_KEYS_FILE")}
    keys = tmp_path / "keys"
    if where == "env":
        env["NBO_API_KEYS"] = "change-me"
    elif where == "file":
        keys.write_text(f"# ok\n{GOOD}\n    # fine\n1\n", encoding="utf-8")
        env["NBO_API_KEYS_FILE"] = str(keys)
    else:  # a file whose only "key" is an indented comment has no key
        keys.write_text("   # a-comment-that-used-to-be-a-key\n", encoding="utf-8")
        env["NBO_API_KEYS_FILE"] = str(keys)
    cmd = [sys.executable, "-m", "cli", "serve", "--data", str(tmp_path / "no-data"), "--store", str(tmp_path / "c.db"),
           "--port", "1", "--state-dir", str(tmp_path / "state")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr[-1000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    if where == "indented-comment-only":
        assert "no API keys" in lines[0]
    else:
        assert f"shorter than {MIN_KEY_CHARS} characters" in lines[0]
        assert ("change-me" not in lines[0]) and ("line 4" in lines[0] if where == "file" else "item 1" in lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == (["keys"] if where != "env" else [])  # nothing created
