"""Keys and values: what a valid key is, and the canonical form values are
stored in.

Keys are UTF-8 strings of 1 to ``KEY_BYTES_MAX`` bytes without control
characters (API.md §2); they may contain ``/``. Values are JSON documents,
stored as canonical compact JSON bytes so that every node stores, and GET
returns, exactly the same bytes.

This module imports only the standard library.
"""

from __future__ import annotations

import json
import re
from typing import Any

from graft.kv._errors import InvalidKey, InvalidValue

#: Longest key, counted in UTF-8 bytes (not characters).
KEY_BYTES_MAX = 1024

# C0 controls (NUL included), DEL and C1 controls: Unicode category Cc.
# They break logs, terminals and URLs, and a NUL would truncate C strings.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def validate_key(key: object) -> None:
    """Return if ``key`` is a valid key; else raise :class:`InvalidKey`
    saying why (not a string, empty, over ``KEY_BYTES_MAX`` UTF-8 bytes,
    not encodable as UTF-8, or containing a control character)."""
    if type(key) is not str:
        raise InvalidKey(f"key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidKey("key must not be empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as e:
        # Only lone surrogates get here; they have no UTF-8 form.
        raise InvalidKey(f"key is not valid UTF-8 (unpaired surrogate at {e.start})") from None
    if len(encoded) > KEY_BYTES_MAX:
        raise InvalidKey(f"key is {len(encoded)} bytes in UTF-8; at most {KEY_BYTES_MAX} allowed")
    control = _CONTROL_CHARACTER.search(key)
    if control is not None:
        raise InvalidKey(
            f"key contains control character U+{ord(control.group()):04X} "
            f"at position {control.start()}"
        )


def key_from_bytes(raw: bytes) -> str:
    """Decode ``raw`` (e.g. a percent-decoded URL path) as a key; raise
    :class:`InvalidKey` if it is not valid UTF-8 or not a valid key."""
    try:
        key = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidKey(f"key is not valid UTF-8 (bad byte at offset {e.start})") from None
    validate_key(key)
    return key


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads and json.dumps with options build a new decoder or
# encoder on every call, which costs as much as parsing a small value.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(document: Any) -> bytes:
    """The canonical form of a JSON ``document`` (as ``json.loads`` returns):
    compact separators, non-ASCII kept as UTF-8, object keys in the order
    given. Raise :class:`InvalidValue` for what JSON cannot express (NaN,
    infinities, non-string object keys, other types)."""
    try:
        text = _ENCODER.encode(document)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidValue(f"value is not a JSON document: {e}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("value contains an unpaired surrogate") from None


def canonicalize_json(text: bytes | str) -> bytes:
    """Parse ``text`` (e.g. a request body) as one JSON document and return
    its canonical form; raise :class:`InvalidValue` naming the problem if it
    is not valid UTF-8 JSON. Duplicate object keys keep the last value, as
    ``json.loads`` does."""
    return canonical_json(parse_json(text))


def parse_json(text: bytes | str) -> Any:
    """The document ``text`` holds; :class:`InvalidValue` naming the problem
    if it is not valid UTF-8 JSON."""
    if not isinstance(text, str):
        # Decode ourselves: json.loads would also guess UTF-16 and UTF-32,
        # which JSON on the wire may not use (RFC 8259 §8.1).
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidValue(f"value is not valid UTF-8 (bad byte at offset {e.start})") from None
    try:
        document = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise InvalidValue(f"value is not valid JSON: {e}") from None
    except (ValueError, RecursionError) as e:
        # parse_constant's refusal, integers past Python's digit limit,
        # nesting deeper than the recursion limit.
        raise InvalidValue(f"value is not valid JSON: {e}") from None
    return document
