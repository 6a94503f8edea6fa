"""Property test: any sequence of cut-and-append, drop_prefix, reset, sync
and reopen on the file log reads back exactly what the in-memory twin holds."""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from graft.raft.messages import Entry, EntryKind
from graft.storage import FileLogStorage, MemoryLogStorage


class LogAgainstModel(RuleBasedStateMachine):
    """The file log (tiny segments, so they roll and get deleted) against
    MemoryLogStorage."""

    def __init__(self) -> None:
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="graft-model-")
        self.segment_bytes_max = 256
        self.log = FileLogStorage(self.path, segment_bytes_max=self.segment_bytes_max)
        self.model = MemoryLogStorage()
        self.term = 1

    def teardown(self) -> None:
        self.log.close()
        shutil.rmtree(self.path, ignore_errors=True)

    @rule(
        back=st.integers(min_value=0, max_value=6),
        count=st.integers(min_value=1, max_value=8),
        size=st.integers(min_value=0, max_value=60),
        kind=st.sampled_from(list(EntryKind)),
        new_term=st.booleans(),
    )
    def append(self, back: int, count: int, size: int, kind: EntryKind, new_term: bool) -> None:
        start = max(self.model.first_index, self.model.last_index + 1 - back)
        if new_term:
            self.term += 1
        entries = [
            Entry(index=i, term=self.term, kind=kind, data=bytes([i % 251]) * size)
            for i in range(start, start + count)
        ]
        self.log.append(entries)
        self.model.append(entries)

    @rule()
    def sync(self) -> None:
        self.log.sync()

    @rule(ahead=st.integers(min_value=-2, max_value=10))
    def drop_prefix(self, ahead: int) -> None:
        index = self.model.first_index + ahead
        self.log.drop_prefix(index)
        self.model.drop_prefix(index)

    @precondition(lambda self: self.model.last_index > 0)
    @rule(ahead=st.integers(min_value=-3, max_value=3))
    def reset(self, ahead: int) -> None:
        index = max(0, self.model.last_index + ahead)
        self.log.reset(index)
        self.model.reset(index)

    @rule(synced=st.booleans())
    def reopen(self, synced: bool) -> None:
        if synced:
            self.log.sync()
        self.log.close()
        self.log = FileLogStorage(self.path, segment_bytes_max=self.segment_bytes_max)

    @invariant()
    def log_matches_model(self) -> None:
        assert self.log.first_index == self.model.first_index
        assert self.log.last_index == self.model.last_index
        lo, hi = self.model.first_index, self.model.last_index + 1
        assert self.log.entries(lo, hi) == self.model.entries(lo, hi)
        for index in (lo - 1, lo, hi - 1, hi):
            assert self.log.term_at(index) == self.model.term_at(index)


LogAgainstModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_file_log_behaves_like_the_memory_model = LogAgainstModel.TestCase
