"""Run the simulator from the command line.

    python -m tests.simulation.run --seeds 1000 --steps 3000 --first-seed 0
    python -m tests.simulation.run --seed 1234 --steps 3000 --verbose

Many seeds run on every core (``--jobs``); each failing seed prints its
knobs, the tail of its trace and the one command that replays it.
``--variant`` plugs in a deliberately broken core (see broken.py) and
``--profile`` biases the knobs towards one scenario (see knobs.py).

This module imports only the standard library and the simulator's modules.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator

from tests.simulation.knobs import PROFILES, Knobs, parse_knobs
from tests.simulation.world import Result, World

DEFAULT_STEPS = 3000


def run_seed(
    seed: int,
    steps: int = DEFAULT_STEPS,
    *,
    profile: str = "swarm",
    variant: str | None = None,
    knobs: Knobs | None = None,
    echo: bool = False,
) -> Result:
    """Run one seed to the end; never raises on a violation, reports it."""
    from graft.raft import RaftNode

    node_class = RaftNode
    if variant is not None:
        from tests.simulation.broken import VARIANTS

        node_class = VARIANTS[variant]
    if knobs is not None:
        profile = knobs.profile
    world = World(seed, profile=profile, node_class=node_class, knobs=knobs, echo=echo)
    return world.run(steps)


def replay_command(result: Result, steps: int, variant: str | None = None) -> str:
    """The one command that replays ``result``'s run."""
    command = f".venv/bin/python -m tests.simulation.run --seed {result.seed} --steps {steps}"
    if result.pinned:
        command += f" --knobs '{result.knobs.describe()}'"
    elif result.profile != "swarm":
        command += f" --profile {result.profile}"
    if variant is not None:
        command += f" --variant {variant}"
    return command


def report_failure(result: Result, steps: int, variant: str | None = None) -> str:
    """Seed, knobs, violation, trace tail and replay command, as text."""
    lines = [
        f"FAILED seed {result.seed} after {result.steps} steps, tick {result.ticks}",
        f"violation: {result.violation}",
        f"knobs: {result.knobs.describe()}",
        "trace tail:",
        *(f"  {line}" for line in result.trace_tail),
        f"replay: {replay_command(result, steps, variant)}",
    ]
    return "\n".join(lines)


def _run_packed(args: tuple[int, int, str, str | None]) -> Result:
    seed, steps, profile, variant = args
    return run_seed(seed, steps, profile=profile, variant=variant)


def run_many(
    seeds: Iterable[int],
    steps: int,
    *,
    profile: str = "swarm",
    variant: str | None = None,
    jobs: int = 1,
) -> Iterator[Result]:
    """Results of ``seeds``, in seed order, on ``jobs`` processes."""
    work = [(seed, steps, profile, variant) for seed in seeds]
    if jobs <= 1 or len(work) <= 1:
        for item in work:
            yield _run_packed(item)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs) as pool:
        yield from pool.imap(_run_packed, work, chunksize=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.simulation.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="fault-phase steps")
    parser.add_argument("--profile", choices=PROFILES, default="swarm")
    parser.add_argument("--variant", help="a deliberately broken core (broken.py)")
    parser.add_argument("--knobs", help="pin the knobs (as a failure report prints them)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--verbose", action="store_true", help="print the whole trace")
    parser.add_argument("--digest", action="store_true", help="print each seed's digest")
    args = parser.parse_args(argv)

    started = time.monotonic()
    if args.seed is not None:
        results = [
            run_seed(
                args.seed,
                args.steps,
                profile=args.profile,
                variant=args.variant,
                knobs=None if args.knobs is None else parse_knobs(args.knobs),
                echo=args.verbose,
            )
        ]
    else:
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        results = list(
            run_many(seeds, args.steps, profile=args.profile, variant=args.variant, jobs=args.jobs)
        )
    elapsed = time.monotonic() - started

    failed = [r for r in results if not r.ok]
    totals: dict[str, int] = {}
    for result in results:
        if args.digest:
            print(f"seed {result.seed} digest {result.digest}")
        for name, value in result.counts.items():
            totals[name] = totals.get(name, 0) + value
    for result in failed:
        print(report_failure(result, args.steps, args.variant))
        print()
    steps = sum(r.steps for r in results)
    ticks = sum(r.ticks for r in results)
    print(
        f"{len(results)} seeds, {len(results) - len(failed)} passed, {len(failed)} failed;"
        f" {steps} steps, {ticks} ticks in {elapsed:.1f}s"
        f" ({steps / max(elapsed, 1e-9):.0f} steps/s)"
    )
    print("  " + ", ".join(f"{name}: {value}" for name, value in sorted(totals.items())))
    if failed:
        print("failing seeds: " + " ".join(str(r.seed) for r in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
