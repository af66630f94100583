"""Op results as records: value objects to the JSON the op ledger stores, and back.

One codec for every op result (Precheck, StreamResult, Promoted, Placed): :func:`as_record`
writes a dataclass as plain JSON with its type's name; :func:`decode` rebuilds it, nested value
objects included. Stdlib only, so the ledger and the engine share it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast

from dltui.model import FileIdentity, ServerValidators

T = TypeVar("T")


def as_record(value: Any) -> dict[str, Any]:
    """A value object as the JSON an op stores as its result; :func:`decode` reads it back."""
    record: dict[str, Any] = _plain(value)
    return record | {"__type__": type(value).__name__}


def _plain(value: Any) -> Any:
    # dataclasses.asdict deep-copies every leaf; these leaves are immutable, so skip that.
    if isinstance(value, FileIdentity):
        return value.as_list()  # compact: five numbers
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def fields_of(data: dict[str, Any]) -> dict[str, Any]:
    """A record's fields with the nested value objects every layer knows rebuilt."""
    out = {k: v for k, v in data.items() if k != "__type__"}
    for key in ("identity", "dest_identity"):  # a list (compact), or a dict
        value = out.get(key)
        if isinstance(value, list):
            out[key] = FileIdentity.from_list(value)
        elif isinstance(value, dict):
            out[key] = FileIdentity(**value)
    if isinstance(out.get("validators"), dict):
        out["validators"] = ServerValidators(**out["validators"])
    return out


def decode(cls: type[T], data: dict[str, Any]) -> T:
    """The value object of type ``cls`` stored by :func:`as_record` (keys it does not know,
    from an older or a hand-made record, are left out)."""
    known = {f.name for f in dataclasses.fields(cast(Any, cls))}
    return cls(**{k: v for k, v in fields_of(data).items() if k in known})
