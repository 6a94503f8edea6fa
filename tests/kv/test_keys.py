"""Keys are UTF-8 strings of 1 to 1024 bytes without control characters;
values are stored as canonical compact JSON (API.md §2)."""

from __future__ import annotations

import pytest

from graft.kv import (
    InvalidKey,
    InvalidValue,
    canonical_json,
    canonicalize_json,
    key_from_bytes,
    validate_key,
)


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "x" * 1024,
        "app/config",
        "/leading/and/trailing/",
        "a//b",
        "é" * 512,
        "😀" * 256,
        "日本",
    ],
)
def test_valid_keys_are_accepted(key: str) -> None:
    """Keys of 1 to 1024 UTF-8 bytes, slashes included, are valid."""
    validate_key(key)
    assert key_from_bytes(key.encode()) == key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "empty"),
        ("x" * 1025, "1025 bytes"),
        ("é" * 513, "1026 bytes"),  # 513 characters, 2 bytes each
        ("😀" * 256 + "x", "1025 bytes"),  # 257 characters, 1025 bytes
        ("a\x00b", r"U\+0000"),
        ("a\nb", r"U\+000A"),
        ("\x7f", r"U\+007F"),
        ("a\x85", r"U\+0085"),
        ("\ud800", "surrogate"),
    ],
)
def test_invalid_keys_are_refused_with_the_reason(key: str, problem: str) -> None:
    """Empty, over-long (counted in UTF-8 bytes), control-character and
    non-UTF-8 keys are refused with a message naming the problem."""
    with pytest.raises(InvalidKey, match=problem):
        validate_key(key)


def test_key_length_is_counted_in_utf8_bytes_not_characters() -> None:
    """A key of 342 three-byte characters (1026 bytes) is too long although
    it has far fewer than 1024 characters."""
    validate_key("€" * 341 + "x")  # 1024 bytes
    with pytest.raises(InvalidKey):
        validate_key("€" * 342)


@pytest.mark.parametrize("key", [None, b"bytes", 1])
def test_non_string_keys_are_refused(key: object) -> None:
    """Only ``str`` is a key."""
    with pytest.raises(InvalidKey, match="must be a string"):
        validate_key(key)


def test_key_bytes_that_are_not_utf8_are_refused() -> None:
    """Undecodable bytes give InvalidKey, not UnicodeDecodeError."""
    with pytest.raises(InvalidKey, match="not valid UTF-8"):
        key_from_bytes(b"a\xffb")


def test_canonical_json_is_compact_and_keeps_unicode() -> None:
    """Canonical JSON has no spaces and keeps non-ASCII as UTF-8."""
    assert canonicalize_json(b'{"a": "b", "c": {"d": "e"}}') == b'{"a":"b","c":{"d":"e"}}'
    assert canonicalize_json('["é", 1.5, null]') == '["é",1.5,null]'.encode()
    assert canonical_json({"n": [1, True, None]}) == b'{"n":[1,true,null]}'


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{",
        b"NaN",
        b"[Infinity]",
        b"\xff",
        b'"\\ud800"',
        "x".encode("utf-16"),
        b"\xef\xbb\xbf1",  # byte order mark
        b"1 2",
    ],
)
def test_text_that_is_not_utf8_json_is_refused(text: bytes) -> None:
    """Invalid JSON, JSON's forbidden constants, lone surrogates and
    non-UTF-8 encodings give InvalidValue."""
    with pytest.raises(InvalidValue):
        canonicalize_json(text)


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    """Nesting past the recursion limit gives InvalidValue, not RecursionError."""
    with pytest.raises(InvalidValue):
        canonicalize_json(b"[" * 100_000 + b"]" * 100_000)


def test_documents_json_cannot_express_are_refused() -> None:
    """NaN and non-JSON types cannot be canonicalized."""
    with pytest.raises(InvalidValue):
        canonical_json(float("nan"))
    with pytest.raises(InvalidValue):
        canonical_json({1, 2})
