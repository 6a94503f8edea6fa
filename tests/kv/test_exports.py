"""graft.kv re-exports its public names from private modules (STYLE §7)."""

from __future__ import annotations

import graft.kv
from graft.kv import _commands, _errors, _keys, _snapshot, _store, interfaces

INTENDED = {
    "COMMAND_FORMAT": _commands.COMMAND_FORMAT,
    "Command": _commands.Command,
    "Delete": _commands.Delete,
    "Put": _commands.Put,
    "decode_command": _commands.decode_command,
    "encode_command": _commands.encode_command,
    "CommandError": _errors.CommandError,
    "InvalidKey": _errors.InvalidKey,
    "InvalidValue": _errors.InvalidValue,
    "KVError": _errors.KVError,
    "SnapshotFormatError": _errors.SnapshotFormatError,
    "KEY_BYTES_MAX": _keys.KEY_BYTES_MAX,
    "canonical_json": _keys.canonical_json,
    "canonicalize_json": _keys.canonicalize_json,
    "key_from_bytes": _keys.key_from_bytes,
    "validate_key": _keys.validate_key,
    "SNAPSHOT_FORMAT": _snapshot.SNAPSHOT_FORMAT,
    "SnapshotView": _snapshot.SnapshotView,
    "chunks_of": _snapshot.chunks_of,
    "serialize": _snapshot.serialize,
    "ApplyResult": _store.ApplyResult,
    "KVStore": _store.KVStore,
    "Outcome": _store.Outcome,
    "Record": _store.Record,
    "IStateMachine": interfaces.IStateMachine,
}


def test_all_lists_exactly_the_intended_names() -> None:
    """``__all__`` is the intended public surface, no more and no less."""
    assert sorted(graft.kv.__all__) == sorted(INTENDED)


def test_exports_are_the_intended_objects() -> None:
    """Each public name is the very object defined in its private module."""
    for name, obj in INTENDED.items():
        assert getattr(graft.kv, name) is obj, name


def test_limits_have_their_documented_values() -> None:
    """Keys may be up to 1024 UTF-8 bytes (API.md §2)."""
    assert graft.kv.KEY_BYTES_MAX == 1024


def test_kv_imports_nothing_impure() -> None:
    """graft.kv imports only the standard library, attrs, msgpack,
    zope.interface and itself: no Twisted, no other graft package."""
    import ast
    import pathlib
    import sys

    allowed_third_party = {"attrs", "msgpack", "zope"}
    package = pathlib.Path(graft.kv.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = (
                    top in sys.stdlib_module_names
                    or top in allowed_third_party
                    or name == "graft.kv"
                    or name.startswith("graft.kv.")
                )
                assert ok, f"{path.name} imports {name}"
                assert top not in {"random", "time", "os", "threading"}, f"{path.name}: {name}"
