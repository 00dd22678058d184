"""What the search index costs the store's commits: ``python bench/store_insert.py``.

Every room line is committed before anyone sees it (the publisher's batches, through the
store's one writer). The search index (schema migration ``_search_index``) first indexed
each batch's words in the same transaction; now the store indexes them after, in batches
of its own, on the same writer. This measures how many lines per second the store
commits, this tree against ``--compare REF`` (default
``main``, taken with ``git archive``), in one run: ``--repeats`` runs of each,
alternating, each in a fresh process (``PYTHONPATH`` set to its tree) and a new database
file, timed from the first batch handed over to the last committed. The same lines every
time (``--seed``): 3 to 15 words each, drawn with a Zipf-like skew from a made-up
vocabulary of ``--words`` (some words everywhere, most rare), ``--batch`` lines per
transaction with up to four in flight, as the publisher hands them over under load.
Prints each run, the medians and their ratio; the process's CPU time per line too
(the writer's thread included), the steadier figure on a busy machine: until the last
commit, and until every line is also indexed (a tree with ``Store.index_now`` is asked to
index what waits; in one without it, the commits indexed). ``--defer-index``: a tree
that indexes off the commit path indexes nothing until the last commit (``index_every``
None), so the first figure is the commit path's own cost.

    python bench/store_insert.py --lines 50000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chat_lines(count: int, vocabulary: int, seed: int) -> list[str]:
    """``count`` chat-like lines (see the module's doc)."""
    rng = random.Random(seed)
    words = [f"w{n}x{rng.randrange(1000)}" for n in range(vocabulary)]
    weights = [1 / (rank + 1) for rank in range(vocabulary)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(3, 15))) for _ in range(count)]


async def one_run(
    path: Path, lines: list[str], batch: int, defer_index: bool
) -> tuple[float, float, float]:
    """Lines per second committed into a new store, CPU microseconds per line until the
    last commit, and until every line is indexed too."""
    from trio_chat.protocol import Message
    from trio_chat.store import Store
    from trio_chat.store.records import message_row

    rows = [
        message_row(Message(id=n + 1, ts=1e9 + n, room=f"#r{n % 20}", nick="bob", text=text))
        for n, text in enumerate(lines)
    ]
    options: dict[str, object] = {"checkpoint_every": None}
    if defer_index and hasattr(Store, "index_now"):
        options["index_every"] = None
    async with Store.open(path, **options) as store:  # type: ignore[arg-type]
        start, cpu = time.perf_counter(), time.process_time()
        pending = []
        for first in range(0, len(rows), batch):
            pending.append(store.append_rows_nowait(rows[first : first + batch]))
            if len(pending) >= 4:
                await pending.pop(0).wait()
        for commit in pending:
            await commit.wait()
        seconds, committed = time.perf_counter() - start, time.process_time() - cpu
        if hasattr(store, "index_now"):
            await store.index_now()
        indexed = time.process_time() - cpu
    return len(rows) / seconds, committed / len(rows) * 1e6, indexed / len(rows) * 1e6


def run_child(
    tree: Path, args: argparse.Namespace, folder: str, name: str
) -> tuple[float, float, float]:
    """One measurement in a fresh process running the ``trio_chat`` of ``tree``."""
    command = [sys.executable, __file__, "--child", str(Path(folder) / f"{name}.db")]
    command += ["--lines", str(args.lines), "--batch", str(args.batch)]
    command += ["--words", str(args.words), "--seed", str(args.seed)]
    command += ["--defer-index"] if args.defer_index else []
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    rate, cpu, indexed = result.stdout.split()
    return float(rate), float(cpu), float(indexed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", default="main", help="git ref to measure against")
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--words", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--defer-index", action="store_true", help="index after the commits")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import trio

        lines = chat_lines(args.lines, args.words, args.seed)
        print(*trio.run(one_run, Path(args.child), lines, args.batch, args.defer_index))
        return
    with tempfile.TemporaryDirectory() as folder:
        ref_tree = Path(folder) / "ref"
        ref_tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.compare, "trio_chat"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(ref_tree)], input=archive.stdout, check=True)
        trees = {"this tree": ROOT, args.compare: ref_tree}
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
        for run in range(args.repeats):
            order = list(trees) if run % 2 == 0 else list(reversed(trees))
            for name in order:
                rate, cpu, indexed = run_child(
                    trees[name], args, folder, f"{run}-{len(results[name])}-{name}"
                )
                results[name].append((rate, cpu, indexed))
                print(
                    f"run {run + 1}: {name}: {rate:,.0f} lines/s, {cpu:.1f} us CPU per line"
                    f" committed, {indexed:.1f} us committed and indexed"
                )
        medians = {
            name: tuple(statistics.median(run[k] for run in got) for k in range(3))
            for name, got in results.items()
        }
        base_rate, base_cpu, base_indexed = medians[args.compare]
        for name, (rate, cpu, indexed) in medians.items():
            print(
                f"median {name}: {rate:,.0f} lines/s ({rate / base_rate:.2f}x), "
                f"{cpu:.1f} us CPU per line committed ({cpu / base_cpu:.2f}x), "
                f"{indexed:.1f} us committed and indexed ({indexed / base_indexed:.2f}x)"
            )


if __name__ == "__main__":
    main()
