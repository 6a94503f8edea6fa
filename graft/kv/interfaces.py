"""The interface between the Raft driver and the state machine it applies
committed entries to (hashicorp/raft fsm.go). graft.kv.KVStore provides it;
a test double may too.

This module imports only zope.interface.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface  # type: ignore[import-untyped]

# zope.interface ships no type information (so the ``type: ignore`` on its
# import and on subclassing it), and its methods are declared without
# ``self`` and without annotations (so the ``type: ignore`` on each).


class IStateMachine(Interface):  # type: ignore[misc]
    """A deterministic state machine fed committed log entries in index
    order. The same entries give the same state and results on every node:
    no clock, randomness or unsorted iteration (Raft §5.4.3)."""

    applied_index = Attribute("Index of the last entry applied, 0 if none (Raft's lastApplied).")

    def apply(index, data):  # type: ignore[no-untyped-def]
        """Apply the command entry at ``index`` (past ``applied_index``) whose
        data is ``data`` and return its result. Malformed data must not raise:
        it gives an error result and changes nothing but ``applied_index``."""

    def mark_applied(index):  # type: ignore[no-untyped-def]
        """Record that the entry at ``index``, which carries no command (a
        leader's no-op, a configuration), is applied."""

    def snapshot():  # type: ignore[misc, no-untyped-def]
        """Return a consistent frozen view of the state, cheaply (call it on
        the reactor thread). The view's ``applied_index`` says which entry it
        reflects; its ``chunks()`` yields the snapshot's bytes and may run on
        any thread while entries go on being applied."""

    def restore(chunks):  # type: ignore[no-untyped-def]
        """Replace the state with the snapshot whose bytes ``chunks`` yields
        (or ``bytes``); if they are damaged raise ``SnapshotFormatError`` and
        leave the state as it was."""
