"""The deterministic simulator: real graft.raft cores, simulated world.

    knobs.py        per-run knobs drawn from the seed (swarm testing), profiles
    network.py      delay, loss, duplication, reordering, partitions
    disk.py         durable state and the write in flight; crashes, torn writes
    statemachine.py the nodes' key/value map and its snapshots
    clients.py      proposals, reads, membership, transfers, compactions
    checks.py       the safety properties, each citing its Raft section
    world.py        the event heap, the driver loop per node, healing, liveness
    trace.py        the trace digest and tail; message formatting
    broken.py       deliberately broken cores, to prove the checks bite
    run.py          the command line: ``python -m tests.simulation.run``

Replay one seed: ``.venv/bin/python -m tests.simulation.run --seed N --steps S
--verbose``; many: ``make sim SEEDS=10000``.
"""
