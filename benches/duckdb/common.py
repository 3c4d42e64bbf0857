"""Helpers shared by the comparison scripts (benches/duckdb, benches/workload)."""

import os
import statistics
import subprocess
import time


def median_time(fn, runs, warmup=1):
    """Median wall time of fn() over `runs` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fetch_arrow(con, q):
    """Runs q and fetches the result as an Arrow table (API names vary across DuckDB releases)."""
    res = con.sql(q)
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        if hasattr(res, name):
            return getattr(res, name)()
    raise RuntimeError("this DuckDB cannot return Arrow tables")


def tessera(binary, db, sql, env=None):
    """Runs `tessera sql` over db with the statements sql: (seconds, stdout).
    `env`: the environment (to give TESSERA_KEY), the current one by default."""
    t = time.perf_counter()
    out = subprocess.run([binary, "sql", "--db", db, "--command=" + sql],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"tessera failed: {out.stderr}")
    return time.perf_counter() - t, out.stdout


def last_number(text):
    """The last number in a table `tessera sql` printed."""
    nums = [c for l in text.splitlines() for c in [l.strip(" |")] if c.isdigit()]
    return int(nums[-1]) if nums else None


def size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def reset_peak_rss():
    """Starts a new high-water mark of this process's resident memory
    (Linux: writing 5 to /proc/self/clear_refs resets VmHWM), as
    `tessera bench` does before each step."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mib():
    """This process's resident-memory high-water mark since the last reset, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None
