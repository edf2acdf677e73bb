"""The one place that starts Spark: a RayDP session on the running Ray cluster.

Java must be set (``JAVA_HOME``/``PATH``) before the JVM starts; the caller passes the
Java home it resolved so Ray workers, which do not inherit the driver's environment,
use the same one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: SQL settings of every Spark session the project starts (RayDP and local alike).
SQL_CONF: dict[str, str] = {
    # Silver shuffles by asset: with a handful of partitions a few heavy assets land in
    # one and a single core does most of the work. Sixteen small ones balance two to
    # four cores; adaptive execution coalesces them again for a small micro-batch.
    "spark.sql.shuffle.partitions": "16",
    "spark.sql.adaptive.advisoryPartitionSizeInBytes": "16m",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.parquet.mergeSchema": "false",
    # pyarrow and PostgreSQL read these as UTC instants; INT96 is a legacy format.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # A write partitioned by date keeps a file open per date instead of sorting every
    # row by date first (Spark falls back to sorting past this many open files). Planned
    # writes add that sort while planning, before the writers could avoid it.
    "spark.sql.maxConcurrentOutputFileWriters": "16",
    "spark.sql.optimizer.plannedWrite.enabled": "false",
    # Silver's windows hold one asset's rows of a batch at a time: in an array up to
    # this many rows, past it in a spillable sorter, which was a quarter of silver's cost.
    "spark.sql.windowExec.buffer.in.memory.threshold": "1000000",
}


def start_spark(
    *,
    app_name: str,
    java_home: Path,
    num_executors: int = 1,
    executor_cores: int = 1,
    executor_memory: str = "1g",
    executor_cpus: float = 0.5,
):
    """Start (or return) the RayDP Spark session of this process.

    Args:
        executor_cpus: Ray logical CPUs each executor actor reserves; fractional so
            Spark fits beside the other actors on a 2-core machine.
    """
    os.environ["JAVA_HOME"] = str(java_home)
    os.environ["PATH"] = f"{java_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    # Everything runs on loopback; without this Spark binds to whatever the hostname says.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    import raydp

    spark = raydp.init_spark(
        app_name=app_name,
        num_executors=num_executors,
        executor_cores=executor_cores,
        executor_memory=executor_memory,
        configs={
            "spark.ray.raydp_spark_executor.actor.resource.cpu": str(executor_cpus),
            "spark.ray.raydp_spark_master.actor.resource.cpu": "0",
            "spark.driver.memory": "1g",
            **SQL_CONF,
        },
    )
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s started on Ray with %d executor(s)", spark.version, num_executors)
    return spark


def stop_spark() -> None:
    import raydp

    raydp.stop_spark()


#: Niceness for Spark's JVMs. Ray starts its Java workers (RayDP's executors) at
#: normal priority, so batch Spark would otherwise starve the live path on a small
#: machine; 19 makes Spark yield to it.
SPARK_NICENESS = 19


def deprioritise_spark_jvms(niceness: int = SPARK_NICENESS) -> int:
    """Lower the CPU priority of every RayDP JVM on this node; return how many changed.

    Raising niceness needs no privilege. Run it again after executors restart, since a
    new JVM starts at Ray's default priority.
    """
    import psutil

    from core.priority import renice_process

    changed = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if ("java" in (proc.info["name"] or "") and "raydp" in cmdline
                    and renice_process(proc.pid, niceness)):
                changed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return changed


def local_spark(app_name: str, java_home: Path, *, cores: int = 1, driver_memory: str = "1g"):
    """A plain local Spark session for one-off batch work from the command line (a
    backfill, a benchmark), with the same SQL settings as the RayDP session."""
    from pyspark.sql import SparkSession

    os.environ["JAVA_HOME"] = str(java_home)
    os.environ["PATH"] = f"{java_home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (SparkSession.builder.master(f"local[{cores}]").appName(app_name)
               .config("spark.driver.memory", driver_memory))
    for key, value in SQL_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
