"""Time against scale for Tessera and the engines beside it, from the
reports of `tessera bench` + compare.py at several sizes.

    plot.py OUT.png REPORT-compare.json [REPORT-compare.json ...]

Each REPORT-compare.json is what compare.py wrote for one run (its
`persons`, and per step Tessera's and each engine's seconds; with DuckDB,
UNIFY beside label propagation in DuckDB SQL). Draws one panel per step
(loads, UNIFY, the ten queries together, and three single queries), time
against persons on log-log axes, one line per engine.
"""

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

PANELS = [
    ("load_csv", "load from CSV"),
    ("load_parquet", "load from Parquet"),
    ("unify", "UNIFY (DuckDB: label propagation)"),
    ("queries", "the ten queries, summed"),
    ("query:abandoned_carts", "abandoned carts"),
    ("query:segment_overlap", "overlap of two segments"),
]
STYLE = {"tessera": ("Tessera", "tab:blue"), "duckdb": ("DuckDB", "tab:orange"),
         "chdb": ("chDB", "tab:green")}


def series(reports):
    """{panel: {engine: [(persons, seconds)]}}"""
    out = {p: {} for p, _ in PANELS}
    for r in sorted(reports, key=lambda r: r["persons"]):
        n = r["persons"]
        engines = [e for e in ("duckdb", "chdb") if r["rows"] and e in r["rows"][0]]
        by_step = {row["step"]: row for row in r["rows"]}
        for panel, _ in PANELS:
            if panel == "unify":
                u = r.get("unify")
                if u:
                    out[panel].setdefault("tessera", []).append((n, u["tessera_s"]))
                    out[panel].setdefault("duckdb", []).append((n, u["duckdb_s"]))
                continue
            if panel == "queries":
                rows = [row for s, row in by_step.items() if s.startswith("query:")]
                out[panel].setdefault("tessera", []).append((n, sum(x["tessera_s"] for x in rows)))
                for e in engines:
                    out[panel].setdefault(e, []).append((n, sum(x[e]["seconds"] for x in rows)))
                continue
            row = by_step.get(panel)
            if row is None:
                continue
            out[panel].setdefault("tessera", []).append((n, row["tessera_s"]))
            for e in engines:
                out[panel].setdefault(e, []).append((n, row[e]["seconds"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("reports", nargs="+")
    args = ap.parse_args()
    reports = []
    for path in args.reports:
        with open(path) as f:
            reports.append(json.load(f))
    data = series(reports)
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, (panel, title) in zip(axes.flat, PANELS):
        for engine, points in data[panel].items():
            label, color = STYLE[engine]
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", label=label, color=color)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("persons")
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    versions = reports[-1].get("versions", {})
    fig.suptitle("tessera bench: time against scale (2 cores; "
                 + ", ".join(f"{k} {v}" for k, v in versions.items()) + ")", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
