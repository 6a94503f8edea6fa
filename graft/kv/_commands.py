"""Commands: what a client's write becomes in a Raft log entry's data.

Encoding (format 1) is one msgpack array, nothing before or after it::

    [1, "put", key: str, value_json: bin, if_revision: int | nil, if_absent: bool]
    [1, "delete", key: str, if_revision: int | nil]

The leading 1 is the format version; a later format gets a new number and
this module keeps decoding the old one, because entries live on disk.
Decoding validates everything the store relies on, so a damaged or hostile
entry is refused with a :class:`CommandError` naming the problem, and
``KVStore.apply`` turns that into an error result, the same on every node.

This module imports only the standard library, attrs and msgpack.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs
import msgpack

from graft.kv._errors import CommandError, InvalidValue
from graft.kv._keys import canonicalize_json, parse_json, validate_key

#: The version number that starts every encoded command.
COMMAND_FORMAT = 1


def _check_key(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    validate_key(value)


def _check_if_revision(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # type() rather than isinstance(): a bool is an int to Python, not to us.
    if value is not None and (type(value) is not int or value < 0):
        raise CommandError(f"if_revision must be a non-negative integer or None, not {value!r}")


def _check_value_json(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bytes:
        raise InvalidValue(f"value_json must be bytes, not {type(value).__name__}")
    if canonicalize_json(value) != value:
        raise InvalidValue("value_json is not in canonical compact form; use canonical_json()")


def _check_flag(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bool:
        raise CommandError(f"{attribute.name} must be a boolean, not {value!r}")


@attrs.frozen(kw_only=True)
class Put:
    """Set ``key`` to the JSON document ``value_json``.

    ``value_json`` is canonical compact JSON (see ``canonical_json``);
    anything else is refused at construction. With ``if_revision`` the put
    happens only if the key exists with exactly that revision (HTTP
    ``If-Match``); with ``if_absent`` only if the key does not exist
    (``If-None-Match: *``). At most one of the two conditions is set.
    """

    key: str = attrs.field(validator=_check_key)
    value_json: bytes = attrs.field(validator=_check_value_json)
    if_revision: int | None = attrs.field(default=None, validator=_check_if_revision)
    if_absent: bool = attrs.field(default=False, validator=_check_flag)

    @classmethod
    def of_json(
        cls,
        *,
        key: str,
        body: bytes | str,
        if_revision: int | None = None,
        if_absent: bool = False,
    ) -> Put:
        """A Put of the JSON document ``body`` (a request body, say),
        canonicalised once; InvalidValue if it is not UTF-8 JSON."""
        value_json = canonicalize_json(body)
        put = cls(key=key, value_json=b"null", if_revision=if_revision, if_absent=if_absent)
        return _with_value(put, value_json)

    def __attrs_post_init__(self) -> None:
        if self.if_absent and self.if_revision is not None:
            raise CommandError("a put takes if_revision or if_absent, not both")


@attrs.frozen(kw_only=True)
class Delete:
    """Remove ``key``; with ``if_revision``, only if the key exists with
    exactly that revision (HTTP ``If-Match``)."""

    key: str = attrs.field(validator=_check_key)
    if_revision: int | None = attrs.field(default=None, validator=_check_if_revision)


Command: TypeAlias = Put | Delete


def encode_command(command: Command) -> bytes:
    """The bytes that carry ``command`` in a log entry (format above)."""
    fields: tuple[object, ...]
    if isinstance(command, Put):
        fields = (
            COMMAND_FORMAT,
            "put",
            command.key,
            command.value_json,
            command.if_revision,
            command.if_absent,
        )
    elif isinstance(command, Delete):
        fields = (COMMAND_FORMAT, "delete", command.key, command.if_revision)
    else:
        raise TypeError(f"not a command: {command!r}")
    data: bytes = msgpack.packb(fields, use_bin_type=True)
    return data


def decode_command(data: bytes) -> Command:
    """The command that :func:`encode_command` turned into ``data``; raise
    :class:`CommandError` (or its subclasses :class:`InvalidKey`,
    :class:`InvalidValue`) naming the problem if ``data`` is not one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CommandError(f"command data must be bytes, not {type(data).__name__}")
    if not data:
        raise CommandError("command data is empty")
    try:
        fields = msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=True)
    except Exception as e:
        # msgpack's errors do not share one base class (OutOfData is not a
        # ValueError; an unhashable map key is a TypeError): catch them all,
        # since nothing else happens inside this call.
        raise CommandError(f"command is not valid msgpack: {type(e).__name__}: {e}") from None
    if type(fields) is not tuple or not fields:
        raise CommandError(f"command must be a msgpack array, not {type(fields).__name__}")
    if type(fields[0]) is not int or fields[0] != COMMAND_FORMAT:
        raise CommandError(f"unknown command format {fields[0]!r}; expected {COMMAND_FORMAT}")
    operation = fields[1] if len(fields) > 1 else None
    # Put and Delete validate their fields as they are built.
    if operation == "put":
        if len(fields) != 6:
            raise CommandError(f"put command has {len(fields) - 2} fields; expected 4")
        _, _, key, value_json, if_revision, if_absent = fields
        return _put_from_log(key, value_json, if_revision, if_absent)
    if operation == "delete":
        if len(fields) != 4:
            raise CommandError(f"delete command has {len(fields) - 2} fields; expected 2")
        _, _, key, if_revision = fields
        return Delete(key=key, if_revision=if_revision)
    raise CommandError(f"unknown operation {operation!r}; expected 'put' or 'delete'")


def _put_from_log(key: object, value_json: object, if_revision: object, if_absent: object) -> Put:
    """A Put decoded from a log entry. Every field is checked as in
    ``Put(...)``, but the value only for being JSON, not re-canonicalised:
    only a Put built (and so canonicalised) by the API is encoded into the
    log, whose records are checksummed, and canonicalising every value
    again on every node cost a tenth of a write's time."""
    if type(value_json) is not bytes:
        raise InvalidValue(f"value_json must be bytes, not {type(value_json).__name__}")
    parse_json(value_json)
    put = Put(key=key, value_json=b"null", if_revision=if_revision, if_absent=if_absent)  # type: ignore[arg-type]
    return _with_value(put, value_json)


def _with_value(put: Put, value_json: bytes) -> Put:
    """``put`` holding ``value_json``, which the caller has checked."""
    object.__setattr__(put, "value_json", value_json)
    return put
