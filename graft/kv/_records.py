"""The sorted map under the store: key -> (value, revision), in key order,
built of immutable blocks of packed bytes, so that a frozen copy costs
O(blocks) and the garbage collector never walks the records.

Order: keys are kept as their UTF-8 bytes and compared as bytes, which is
the order API.md §2 promises. (It is also Python's ``str`` order: UTF-8
byte order equals code point order, and valid keys have no surrogates.)

Layout: a list of blocks, each holding up to ``2 * BLOCK_RECORDS``
consecutive records, plus ``_maxes``, the last key of each block, for
bisection: the blocked layout of sortedcontainers' SortedList, kept in the
standard library here. Lookups are O(log n); a write builds one new block,
O(log n + BLOCK_RECORDS) with a memcpy of the block's bytes; listing from a
key is O(log n + records listed).

Why packed bytes: a block stores its keys in one ``bytes`` and its values in
another, with ``array`` offsets and revisions. None of these is a container
the garbage collector tracks, so there is no per-record object to visit.
With a list or tuple of records per block, a collection at a million keys
took 110 to 170 ms (measured; tuples escape tracking only after the first
collection that sees them, and replacing blocks allocates no net objects,
so young generations grew to hold most of the map): over the reactor's
100 ms budget. Packed, it is a few milliseconds, and memory per record is
the record's bytes plus 24 bytes of offsets and revision.

Blocks are never changed once built: a write builds a new block and puts
it in the list. So ``freeze`` is a copy of the block list, and a frozen
copy stays consistent while another thread reads it and this map goes on.

This module imports only the standard library.
"""

from __future__ import annotations

import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from itertools import accumulate, repeat
from operator import add

#: Records a block is split back to; a block splits past twice this. Small,
#: because every write copies one block's bytes and offsets.
BLOCK_RECORDS = 64
#: A block of more than one record also splits once its values pass this.
BLOCK_VALUE_BYTES = 1 << 16


def new_offsets(values: Sequence[int] | Iterator[int] = ()) -> array.array[int]:
    """An offsets or revisions column: signed 64-bit integers (raises
    ``TypeError``/``OverflowError`` on anything else)."""
    return array.array("q", values)


def _splice(
    blob: bytes, ends: array.array[int], start: int, stop: int, new: bytes | None
) -> tuple[bytes, array.array[int]]:
    """Items ``start:stop`` of a packed column replaced by ``new`` (one item)
    or by nothing. ``ends[i]`` is where item ``i`` ends in ``blob``."""
    begin = ends[start - 1] if start else 0
    end = ends[stop - 1] if stop else 0
    inserted = new if new is not None else b""
    delta = len(inserted) - (end - begin)
    out = ends[:start]
    if new is not None:
        out.append(begin + len(new))
    tail = ends[stop:]
    out.extend(tail if not delta else new_offsets(map(add, tail, repeat(delta))))
    return blob[:begin] + inserted + blob[end:], out


class Block:
    """A run of consecutive records, keys strictly increasing, never empty
    while it belongs to a map; never changed after construction (its arrays
    included). Record ``i``'s key is ``key_blob[key_ends[i-1]:key_ends[i]]``
    (from 0 for the first); values likewise."""

    __slots__ = ("key_blob", "key_ends", "revisions", "value_blob", "value_ends")

    def __init__(
        self,
        key_blob: bytes,
        key_ends: array.array[int],
        value_blob: bytes,
        value_ends: array.array[int],
        revisions: array.array[int],
    ) -> None:
        assert len(key_ends) == len(value_ends) == len(revisions)
        self.key_blob = key_blob
        self.key_ends = key_ends
        self.value_blob = value_blob
        self.value_ends = value_ends
        self.revisions = revisions

    @classmethod
    def from_columns(
        cls, keys: Sequence[bytes], values: Sequence[bytes], revisions: array.array[int]
    ) -> Block:
        return cls(
            b"".join(keys),
            new_offsets(accumulate(map(len, keys))),
            b"".join(values),
            new_offsets(accumulate(map(len, values))),
            revisions,
        )

    def __len__(self) -> int:
        return len(self.revisions)

    def key(self, i: int) -> bytes:
        return self.key_blob[self.key_ends[i - 1] if i else 0 : self.key_ends[i]]

    def value(self, i: int) -> bytes:
        return self.value_blob[self.value_ends[i - 1] if i else 0 : self.value_ends[i]]

    def key_list(self, start: int = 0) -> list[bytes]:
        blob, ends = self.key_blob, self.key_ends
        begins = ends[start - 1 : -1] if start else [0, *ends[:-1]]
        return [blob[b:e] for b, e in zip(begins, ends[start:], strict=True)]

    def value_list(self, start: int = 0) -> list[bytes]:
        blob, ends = self.value_blob, self.value_ends
        begins = ends[start - 1 : -1] if start else [0, *ends[:-1]]
        return [blob[b:e] for b, e in zip(begins, ends[start:], strict=True)]

    def find(self, key: bytes, *, after: bool = False) -> int:
        """Where ``key`` is or would go (``after``: past an equal key):
        bisection over the packed keys."""
        blob, ends = self.key_blob, self.key_ends
        low, high = 0, len(ends)
        while low < high:
            middle = (low + high) // 2
            probe = blob[ends[middle - 1] if middle else 0 : ends[middle]]
            if probe < key or (after and probe == key):
                low = middle + 1
            else:
                high = middle
        return low

    def replaced(self, start: int, stop: int, record: tuple[bytes, bytes, int] | None) -> Block:
        """This block with records ``start:stop`` replaced by ``record`` or
        by nothing."""
        revisions = self.revisions[:start]
        if record is None:
            key = value = None
        else:
            key, value, revision = record
            revisions.append(revision)
        revisions.extend(self.revisions[stop:])
        key_blob, key_ends = _splice(self.key_blob, self.key_ends, start, stop, key)
        value_blob, value_ends = _splice(self.value_blob, self.value_ends, start, stop, value)
        return Block(key_blob, key_ends, value_blob, value_ends, revisions)

    def split(self, at: int) -> tuple[Block, Block]:
        key_at, value_at = self.key_ends[at - 1], self.value_ends[at - 1]
        head = Block(
            self.key_blob[:key_at],
            self.key_ends[:at],
            self.value_blob[:value_at],
            self.value_ends[:at],
            self.revisions[:at],
        )
        tail = Block(
            self.key_blob[key_at:],
            new_offsets(map(add, self.key_ends[at:], repeat(-key_at))),
            self.value_blob[value_at:],
            new_offsets(map(add, self.value_ends[at:], repeat(-value_at))),
            self.revisions[at:],
        )
        return head, tail


def blocks_of(
    keys: Sequence[bytes], values: Sequence[bytes], revisions: array.array[int]
) -> Iterator[Block]:
    """Sorted columns cut into blocks of ``BLOCK_RECORDS``."""
    size = BLOCK_RECORDS
    for start in range(0, len(keys), size):
        stop = start + size
        yield Block.from_columns(keys[start:stop], values[start:stop], revisions[start:stop])


class RecordMap:
    """Sorted map from key to (value, revision); see the module docstring."""

    def __init__(self, blocks: Sequence[Block] = (), count: int | None = None) -> None:
        """Adopt ``blocks``: non-empty, keys increasing within and across
        blocks (the caller checked)."""
        self._blocks: list[Block] = list(blocks)
        #: Invariant: ``_maxes[i]`` is the last key of ``_blocks[i]``.
        self._maxes = [block.key(len(block) - 1) for block in self._blocks]
        self._count = sum(map(len, self._blocks)) if count is None else count

    def __len__(self) -> int:
        return self._count

    def get(self, key: str) -> tuple[bytes, int] | None:
        """The value and revision at ``key``, or None."""
        encoded = key.encode("utf-8", "surrogatepass")
        i = bisect_left(self._maxes, encoded)
        if i == len(self._maxes):
            return None
        block = self._blocks[i]
        j = block.find(encoded)
        if block.key(j) != encoded:
            return None
        return block.value(j), block.revisions[j]

    def put(self, key: str, value: bytes, revision: int) -> None:
        """Set ``key`` to ``value`` with ``revision``, inserting if absent."""
        encoded = key.encode("utf-8")
        if not self._blocks:
            block = Block.from_columns([encoded], [value], new_offsets([revision]))
            self._blocks.append(block)
            self._maxes.append(encoded)
            self._count += 1
            return
        # Past the last key: extend the last block.
        i = min(bisect_left(self._maxes, encoded), len(self._maxes) - 1)
        block = self._blocks[i]
        j = block.find(encoded)
        present = j < len(block) and block.key(j) == encoded
        block = block.replaced(j, j + present, (encoded, value, revision))
        self._count += not present
        size = len(block)
        if size > 2 * BLOCK_RECORDS:
            at = BLOCK_RECORDS
        elif size > 1 and block.value_ends[-1] > BLOCK_VALUE_BYTES:
            # Split where the values' bytes are halved.
            at = min(max(bisect_left(block.value_ends, block.value_ends[-1] // 2), 1), size - 1)
        else:
            self._blocks[i] = block
            self._maxes[i] = block.key(size - 1)
            return
        head, tail = block.split(at)
        self._blocks[i : i + 1] = [head, tail]
        self._maxes[i : i + 1] = [head.key(len(head) - 1), tail.key(len(tail) - 1)]

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        encoded = key.encode("utf-8", "surrogatepass")
        i = bisect_left(self._maxes, encoded)
        if i == len(self._maxes):
            return False
        block = self._blocks[i]
        j = block.find(encoded)
        if block.key(j) != encoded:
            return False
        self._count -= 1
        if len(block) == 1:
            # Small blocks are not merged: they cost a little bisection and
            # snapshot time, never correctness.
            del self._blocks[i]
            del self._maxes[i]
            return True
        block = block.replaced(j, j + 1, None)
        self._blocks[i] = block
        self._maxes[i] = block.key(len(block) - 1)
        return True

    def scan(self, start: str, *, inclusive: bool = True) -> Iterator[tuple[str, bytes, int]]:
        """Records in key order from ``start`` (included or not). The map
        must not change while the iterator is in use."""
        encoded = start.encode("utf-8", "surrogatepass")
        i = (bisect_left if inclusive else bisect_right)(self._maxes, encoded)
        if i == len(self._blocks):
            return
        j = self._blocks[i].find(encoded, after=not inclusive)
        for block in self._blocks[i:]:
            for k in range(j, len(block)):
                yield block.key(k).decode("utf-8"), block.value(k), block.revisions[k]
            j = 0

    def freeze(self) -> tuple[Block, ...]:
        """The current blocks, which never change: O(blocks)."""
        return tuple(self._blocks)

    def check_invariants(self) -> None:
        """Assert the layout's invariants (for tests): O(n)."""
        previous: bytes | None = None
        count = 0
        assert len(self._maxes) == len(self._blocks)
        for block, maximum in zip(self._blocks, self._maxes, strict=True):
            assert len(block) > 0, "empty block"
            assert len(block) <= 2 * BLOCK_RECORDS
            assert block.key_ends[-1] == len(block.key_blob)
            assert block.value_ends[-1] == len(block.value_blob)
            assert list(block.key_ends) == sorted(block.key_ends)
            assert list(block.value_ends) == sorted(block.value_ends)
            assert block.key(len(block) - 1) == maximum
            for key in block.key_list():
                assert previous is None or previous < key, (previous, key)
                key.decode("utf-8")
                previous = key
            count += len(block)
        assert count == self._count
