"""Opening a damaged log: a torn last record is cut off; damage anywhere
else raises StorageCorruption naming the file and offset (DESIGN.md
"Durability": never a silent repair)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from graft.storage import FileLogStorage, StorageCorruption
from graft.storage.record import HEADER_SIZE, SEGMENT_MAGIC
from tests.storage.helpers import make_entries

SIZE = 20
RECORD = HEADER_SIZE + SIZE


def write_log(path: Path, count: int, segment_bytes_max: int = 1 << 20) -> list[Path]:
    """A log of ``count`` synced entries, one sync per entry; its segment files."""
    log = FileLogStorage(str(path), segment_bytes_max=segment_bytes_max)
    for entry in make_entries(1, count, size=SIZE):
        log.append([entry])
        log.sync()
    log.close()
    return sorted(path.glob("*.wal"))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def record_offset(n: int) -> int:
    """Offset of the n-th record (from 0) of a segment."""
    return len(SEGMENT_MAGIC) + n * RECORD


def test_flipped_byte_in_the_middle_raises_naming_file_and_offset(tmp_path: Path) -> None:
    """A damaged record followed by intact ones raises StorageCorruption with file and offset."""
    (segment,) = write_log(tmp_path, 10)
    flip_byte(segment, record_offset(4) + HEADER_SIZE + 3)
    with pytest.raises(StorageCorruption) as info:
        FileLogStorage(str(tmp_path))
    assert info.value.path == str(segment)
    assert info.value.offset == record_offset(4)
    assert str(segment) in str(info.value)
    assert f"offset {record_offset(4)}" in str(info.value)


def test_flipped_header_byte_in_the_middle_raises(tmp_path: Path) -> None:
    """A damaged length field is caught by the header checksum, not trusted."""
    (segment,) = write_log(tmp_path, 10)
    flip_byte(segment, record_offset(3) + 8)  # the length field
    with pytest.raises(StorageCorruption) as info:
        FileLogStorage(str(tmp_path))
    assert info.value.offset == record_offset(3)


def test_damage_in_an_older_segment_raises_even_at_its_end(tmp_path: Path) -> None:
    """Only the last segment may end torn: damage at the end of an older one raises."""
    segments = write_log(tmp_path, 12, segment_bytes_max=3 * RECORD)
    assert len(segments) >= 2
    last_in_first = (segments[0].stat().st_size - len(SEGMENT_MAGIC)) // RECORD - 1
    flip_byte(segments[0], record_offset(last_in_first) + HEADER_SIZE)
    with pytest.raises(StorageCorruption) as info:
        FileLogStorage(str(tmp_path))
    assert info.value.path == str(segments[0])


def test_flipped_byte_in_the_last_record_is_cut_off(tmp_path: Path) -> None:
    """A damaged last record of the last segment is a torn write: the log ends before it."""
    (segment,) = write_log(tmp_path, 10)
    for where in (0, 8, HEADER_SIZE + 5):  # header CRC, length, data
        original = segment.read_bytes()
        flip_byte(segment, record_offset(9) + where)
        log = FileLogStorage(str(tmp_path))
        assert log.last_index == 9
        assert log.entries(1, 10) == make_entries(1, 9, size=SIZE)
        assert log.torn_tail is not None
        log.close()
        segment.write_bytes(original)


def test_truncating_anywhere_in_the_last_record_ends_the_log_before_it(tmp_path: Path) -> None:
    """A file cut at every offset inside the last record opens with the previous record last."""
    (segment,) = write_log(tmp_path, 5)
    original = segment.read_bytes()
    start = record_offset(4)
    for cut in range(start, start + RECORD):
        segment.write_bytes(original[:cut])
        log = FileLogStorage(str(tmp_path))
        assert log.last_index == 4, cut
        assert log.entries(1, 5) == make_entries(1, 4, size=SIZE)
        log.append(make_entries(5, 1, size=SIZE))  # the cut file takes new records
        log.sync()
        log.close()
        log = FileLogStorage(str(tmp_path))
        assert log.entries(1, 6) == make_entries(1, 5, size=SIZE)
        log.close()


def test_zeroed_tail_after_power_loss_is_cut_off(tmp_path: Path) -> None:
    """Zero bytes after the last record (size grew, data never written) are cut off."""
    (segment,) = write_log(tmp_path, 5)
    with open(segment, "ab") as f:
        f.write(bytes(4096))
    log = FileLogStorage(str(tmp_path))
    assert log.last_index == 5
    log.close()
    assert segment.stat().st_size == record_offset(5)


def test_truncated_segment_magic_in_the_last_segment_is_rewritten(tmp_path: Path) -> None:
    """A last segment that never got its whole magic opens as an empty segment."""
    segments = write_log(tmp_path, 4, segment_bytes_max=2 * RECORD)
    assert len(segments) == 2  # entries 1-2, then 3-4
    segments[-1].write_bytes(SEGMENT_MAGIC[:3])
    log = FileLogStorage(str(tmp_path), segment_bytes_max=2 * RECORD)
    assert log.last_index == 2
    log.append(make_entries(3, 1, size=SIZE))
    log.sync()
    log.close()
    log = FileLogStorage(str(tmp_path))
    assert log.entries(1, 4) == make_entries(1, 3, size=SIZE)
    log.close()


def test_foreign_file_refused_as_not_a_segment(tmp_path: Path) -> None:
    """A .wal file without the magic is refused, not read."""
    (tmp_path / "00000000000000000001.wal").write_bytes(b"hello, not a log file")
    with pytest.raises(StorageCorruption, match="magic"):
        FileLogStorage(str(tmp_path))


def test_missing_middle_segment_raises(tmp_path: Path) -> None:
    """A gap in segment numbers means lost records: refuse to open."""
    segments = write_log(tmp_path, 12, segment_bytes_max=3 * RECORD)
    assert len(segments) >= 3
    os.unlink(segments[1])
    with pytest.raises(StorageCorruption, match="missing"):
        FileLogStorage(str(tmp_path))


def test_damage_found_on_read_names_file_and_offset(tmp_path: Path) -> None:
    """A record damaged after opening raises StorageCorruption when read."""
    (segment,) = write_log(tmp_path, 6)
    log = FileLogStorage(str(tmp_path))
    flip_byte(segment, record_offset(2) + HEADER_SIZE + 1)
    with pytest.raises(StorageCorruption) as info:
        log.entries(1, 7)
    assert info.value.offset == record_offset(2)
    log.close()
