"""Commands round-trip through their log-entry encoding, and decoding
refuses anything else with a CommandError naming the problem."""

from __future__ import annotations

import contextlib

import msgpack
import pytest

from graft.kv import (
    CommandError,
    Delete,
    InvalidKey,
    InvalidValue,
    Put,
    decode_command,
    encode_command,
)


@pytest.mark.parametrize(
    "command",
    [
        Put(key="a", value_json=b'{"a":"b"}'),
        Put(key="a/b/é", value_json=b"1", if_revision=7),
        Put(key="k", value_json=b"null", if_absent=True),
        Put(key="k", value_json=b"[]", if_revision=0),
        Delete(key="a"),
        Delete(key="a", if_revision=3),
    ],
)
def test_commands_round_trip_through_their_encoding(command: Put | Delete) -> None:
    """decode_command(encode_command(c)) == c."""
    assert decode_command(encode_command(command)) == command


def test_put_encoding_is_the_documented_msgpack_array() -> None:
    """A put is [1, "put", key, value, if_revision, if_absent] in msgpack."""
    data = encode_command(Put(key="a", value_json=b'"v"', if_revision=2))
    assert msgpack.unpackb(data) == [1, "put", "a", b'"v"', 2, False]
    data = encode_command(Delete(key="a"))
    assert msgpack.unpackb(data) == [1, "delete", "a", None]


def test_put_refuses_both_conditions_at_once() -> None:
    """If-Match and If-None-Match: * together make no sense."""
    with pytest.raises(CommandError, match="not both"):
        Put(key="a", value_json=b"1", if_revision=1, if_absent=True)


def test_put_refuses_non_canonical_json() -> None:
    """value_json must already be canonical, so every node stores the same bytes."""
    with pytest.raises(InvalidValue, match="canonical"):
        Put(key="a", value_json=b'{"a": 1}')
    with pytest.raises(InvalidValue):
        Put(key="a", value_json=b"{")


def test_commands_refuse_invalid_keys() -> None:
    """A command's key is validated like any key."""
    with pytest.raises(InvalidKey):
        Delete(key="")


def test_if_revision_must_be_a_non_negative_integer() -> None:
    """Booleans, negatives and strings are not revisions."""
    for bad in (True, -1, "1", 1.0):
        with pytest.raises(CommandError, match="if_revision"):
            Delete(key="a", if_revision=bad)  # type: ignore[arg-type]


def _pack(*fields: object) -> bytes:
    data: bytes = msgpack.packb(fields, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\xc1", "not valid msgpack"),
        (b"\x93\x01", "not valid msgpack"),  # truncated array
        (_pack(1, "delete", "a", None) + b"\x00", "not valid msgpack"),  # trailing bytes
        (msgpack.packb({"op": "put"}), "must be a msgpack array"),
        (msgpack.packb({1: 2}), "not valid msgpack"),  # int map key
        (_pack(), "must be a msgpack array"),
        (_pack(2, "delete", "a", None), "unknown command format 2"),
        (_pack(True, "delete", "a", None), "unknown command format"),
        (_pack(1), "unknown operation None"),
        (_pack(1, "get", "a"), "unknown operation 'get'"),
        (_pack(1, "delete", "a"), "expected 2"),
        (_pack(1, "put", "a", b"1", None), "expected 4"),
        (_pack(1, "delete", "", None), "empty"),
        (_pack(1, "delete", b"a", None), "must be a string"),
        (_pack(1, "delete", "a\x00", None), r"U\+0000"),
        (b"\x94\x01\xa6delete\xa2\xff\xfe\xc0", "not valid msgpack"),  # key not UTF-8
        (_pack(1, "delete", "a", "3"), "if_revision"),
        (_pack(1, "put", "a", "1", None, False), "must be bytes"),
        (_pack(1, "put", "a", b"{", None, False), "not valid JSON"),
        (_pack(1, "put", "a", b"1", None, 0), "if_absent must be a boolean"),
        (_pack(1, "put", "a", b"1", 1, True), "not both"),
    ],
)
def test_malformed_command_bytes_are_refused_with_the_reason(data: bytes, problem: str) -> None:
    """Every kind of malformed entry data gives a CommandError, never another exception."""
    with pytest.raises(CommandError, match=problem):
        decode_command(data)


def test_decode_never_raises_anything_but_command_error_on_random_bytes() -> None:
    """Arbitrary bytes decode to a command or raise CommandError."""
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.binary(max_size=64))
    def check(data: bytes) -> None:
        with contextlib.suppress(CommandError):
            decode_command(data)

    check()


def test_put_of_json_canonicalises_a_request_body_once() -> None:
    """Put.of_json takes any JSON text and stores its canonical form."""
    put = Put.of_json(key="a", body=b'{ "b" : [1, 2] , "a": "\\u00e9" }', if_absent=True)

    assert put.value_json == '{"b":[1,2],"a":"é"}'.encode()
    assert put.if_absent
    assert decode_command(encode_command(put)) == put


def test_put_of_json_refuses_what_is_not_json() -> None:
    """A body that is not JSON is an InvalidValue, as for Put(...)."""
    with pytest.raises(InvalidValue, match="not valid JSON"):
        Put.of_json(key="a", body=b"{")
