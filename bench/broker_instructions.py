"""Instructions per chat line through the broker, counted by valgrind:
``python bench/broker_instructions.py``.

``broker_path.py`` gives the broker's CPU per line, which moves by 10-20% from run to run
on this shared machine. This runs the same chat (``--nodes`` in-process servers sharing a
room through a private redis-server, ``--members`` counting members on each) under
``valgrind --tool=callgrind`` as :mod:`instructions` does for one server: twice, with
``--lines`` lines and twice as many, and the difference divided by ``--lines`` is the
cost of a line on all nodes together, with start-up and the logins taken out. The
redis-server runs outside valgrind (its instructions are not counted), and how many lines
each read of the log brings moves a little with timing, so runs of one tree agree within
a few percent rather than instructions.py's one.

``--compare REV`` counts another commit's tree too, in the same run. ``--runs``: the
lines are said a burst at a time through ``Hub.say_lines`` (see ``broker_path.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from instructions import collected, per_tree


def count(tree: Path, args: argparse.Namespace, lines: int) -> int:
    arguments = ["--nodes", str(args.nodes), "--members", str(args.members)]
    arguments += ["--lines", str(lines), "--repeats", "1"] + ["--runs"] * args.runs
    return collected(tree, "broker_path.py", arguments)


def per_line(tree: Path, args: argparse.Namespace) -> float:
    small = count(tree, args, args.lines)
    large = count(tree, args, 2 * args.lines)
    return (large - small) / args.lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2, help="0: one server, no broker")
    parser.add_argument("--members", type=int, default=50, help="room members per node")
    parser.add_argument("--lines", type=int, default=2000, help="lines of the smaller run")
    parser.add_argument(
        "--runs", action="store_true", help="each burst said as a run (Hub.say_lines)"
    )
    parser.add_argument("--compare", action="append", default=[], help="another git rev")
    args = parser.parse_args()
    results = per_tree(args.compare, lambda tree: per_line(tree, args))
    base = results[0][1]
    said = ", said in runs" if args.runs else ""
    print(f"{args.nodes} nodes of {args.members} members, lines of 64 characters{said}:")
    for name, instructions in results:
        ratio = instructions / base
        print(f"  {name:>12}: {instructions:>10,.0f} instructions per line ({ratio:.3f}x)")


if __name__ == "__main__":
    main()
