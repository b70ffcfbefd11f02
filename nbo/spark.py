"""One way to start Spark for nbo's Spark engines (`nbo score --engine spark`, `nbo features
--engine spark`): where the session runs, and the settings every nbo job needs.

Where: `--master URL` (a cluster manager: `spark://host:7077`, `yarn`, `k8s://...`, `local[4]`),
else `--remote URL` or the `SPARK_REMOTE` environment variable (Spark Connect, `sc://host:15002`),
else `spark.master` from Spark's own configuration (`spark-defaults.conf`, `spark-submit`), else
`local[*]` on this machine. PySpark is imported only here, and only when a Spark engine runs.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from typing import Any

from nbo.errors import NboError

#: What PySpark 4.3 warns on every import of its pandas layer (driver and each Python worker) with
#: pandas 3. Silenced for nbo's Spark paths only, because each is tested against the pandas engine
#: (docs/batch.md "PySpark and pandas 3").
PANDAS3_WARNING = "PySpark does not yet fully support pandas"


def quiet_pandas_warning() -> None:
    """Silence `PANDAS3_WARNING` in this process and in the Python workers Spark starts (they
    inherit the environment: `PYTHONWARNINGS`), and no other warning."""
    warnings.filterwarnings("ignore", message=PANDAS3_WARNING, category=FutureWarning)
    # pandas 3 deprecates a keyword PySpark 4.3's own Arrow-to-pandas conversion passes (its code, not ours)
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module=r"pyspark\.")
    rule = f"ignore:{PANDAS3_WARNING}:FutureWarning"
    current = os.environ.get("PYTHONWARNINGS", "")
    if rule not in current.split(","):
        os.environ["PYTHONWARNINGS"] = f"{current},{rule}" if current else rule


def spark_session(app_name: str, master: str | None = None, remote: str | None = None,
                  config: dict[str, str] | None = None) -> Any:
    """A `SparkSession` for an nbo job (see the module docstring for where it runs).

    The Python workers run this interpreter (`PYSPARK_PYTHON`), one LightGBM/OpenMP thread each
    (Spark already runs one task per core), timestamps are read and written in UTC, the progress
    bar and web UI are off. `config` adds job-specific settings.
    """
    if master and remote:
        raise NboError("give a Spark master or a Spark Connect remote, not both")
    if importlib.util.find_spec("pyspark") is None:
        raise NboError("the Spark engine needs PySpark: pip install 'nbo[spark]'")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    quiet_pandas_warning()
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    remote = remote or (None if master else os.environ.get("SPARK_REMOTE"))
    if remote:
        builder = builder.remote(remote)
    elif master:
        builder = builder.master(master)
    elif not SparkConf().contains("spark.master"):
        builder = builder.master("local[*]")
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        **(config or {}),
    }
    for key, value in settings.items():
        if remote and key.startswith("spark.ui."):
            continue  # fixed by the Connect server, not by a client
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # PySpark raises its own runtime errors when the JVM cannot start
        if "JAVA_GATEWAY_EXITED" in str(exc) or "JAVA_HOME" in str(exc):
            raise NboError("Spark could not start its Java process: install a Java 17 runtime or set JAVA_HOME") from None
        raise
