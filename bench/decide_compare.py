"""Saturated decide throughput of a commit against the working tree, alternating, same machine.

    .venv/bin/python bench/decide_compare.py --base HEAD~1 [--rounds 3] [--decide-only] [--open-rate 2000]

This VM's speed drifts by 10-20% between minutes, so a before/after claim needs both measured
turn about. Checks ``--base`` out in a throwaway git worktree, then per round starts a fresh
worker from each tree in turn (core 0, after its start-up loads; wrk, Tansu and Redis on core 1)
and measures wrk-32 on one experiment per allocator, as ``decide_ablation.py`` does; with
``--open-rate``, first p50/p99 and the worker's CPU per decision at that offered rate (the open-loop
generator on core 1). Prints each
run, the mean per tree and the ratio; writes docs/results/decide_compare.json. Measures; asserts
nothing. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.decide_ablation import measure, rig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="HEAD", help="the commit to compare the working tree with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--allocators", default="thompson,actor_critic")
    ap.add_argument(
        "--decide-only", action="store_true", help="workers ingest nothing (ABENGINE_INGEST_ENABLED=0)"
    )
    ap.add_argument(
        "--open-rate", type=float, default=0.0, help="also measure latency at this offered req/s (open loop)"
    )
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "decide_compare.json"))
    args = ap.parse_args()
    off = "ingest" if args.decide_only else ""
    rows: list[dict] = []
    with rig("decide-compare") as (tmp, kafka, redis_url):
        base_sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        base = tmp / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), base_sha], check=True
        )
        trees = {base_sha: base, "working tree": ROOT}
        try:
            for rnd in range(args.rounds):
                for name, tree in trees.items():
                    for alloc in args.allocators.split(","):
                        row = measure(
                            tree, kafka, redis_url, alloc, off, args.seconds, tmp / "w.log", args.open_rate
                        )
                        rows.append({**row, "tree": name, "round": rnd})
                        latency = (
                            f"   at {row['open_achieved_rps']:.0f} req/s: p50 {row['open_p50_ms']:.2f} ms,"
                            f" p99 {row['open_p99_ms']:.2f} ms, worker {row['open_worker_cpu_us']:.0f} µs CPU"
                            " per decision"
                            if args.open_rate
                            else ""
                        )
                        print(
                            f"round {rnd} {name:13} {alloc:13} {row['achieved_rps']:8.0f} req/s{latency}",
                            flush=True,
                        )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(f"\n{'allocator':13} {base_sha:>13} {'working tree':>13} {'ratio':>6}   (mean req/s, wrk-32)")
    for alloc in args.allocators.split(","):
        mean = {
            name: statistics.mean(
                r["achieved_rps"] for r in rows if (r["tree"], r["allocator"]) == (name, alloc)
            )
            for name in trees
        }
        before, after = mean[base_sha], mean["working tree"]
        print(f"{alloc:13} {before:13.0f} {after:13.0f} {after / before:6.2f}")
        if args.open_rate:
            p99 = {
                name: statistics.median(
                    r["open_p99_ms"] for r in rows if (r["tree"], r["allocator"]) == (name, alloc)
                )
                for name in trees
            }
            cpu = {
                name: statistics.mean(
                    r["open_worker_cpu_us"] for r in rows if (r["tree"], r["allocator"]) == (name, alloc)
                )
                for name in trees
            }
            print(
                f"{'':13} {p99[base_sha]:10.2f} ms {p99['working tree']:10.2f} ms"
                f"   (median p99 at {args.open_rate:.0f} req/s offered)\n"
                f"{'':13} {cpu[base_sha]:10.0f} µs {cpu['working tree']:10.0f} µs"
                f" {cpu['working tree'] / cpu[base_sha]:6.2f}"
                "   (mean worker CPU per decision at that rate)"
            )
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": os.uname().nodename,
                "base": base_sha,
                "decide_only": args.decide_only,
                "open_rate": args.open_rate,
                "seconds": args.seconds,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
