"""The wire contract's machinery: data classes that check their own JSON (see :mod:`shared.api`).

:class:`Wire` reads a data class's annotations to build it from a JSON object (every field's presence and type
checked, the bad one named in an :class:`ApiError`) and to write it back. bpy-free, torch-free and numpy-free (the
add-on vendors this package).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, TypeVar, Union


class ApiError(ValueError):
    """A request or answer that does not follow the contract; the message names the bad field."""


W = TypeVar("W", bound="Wire")


class Wire:
    """Base of the contract's data classes: typed ``from_json`` / ``to_json`` driven by the annotations."""

    #: Fields left out of ``to_json`` when they are None (answers that only sometimes carry them).
    omit_none: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_json(cls: type[W], data: Any, where: str = "") -> W:
        """Build from a JSON object, checking every field's presence and type (raises :class:`ApiError`)."""
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise ApiError(f"{where}: expected a JSON object, got {_kind(data)}")
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ApiError(f"{where}.{f.name}: missing")
                continue
            kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
        obj = cls(**kwargs)
        obj.check(where)
        return obj

    def check(self, where: str) -> None:
        """Checks beyond types (allowed values); raise :class:`ApiError`. Overridden where needed."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with the wire's field names."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self.omit_none:
                continue
            out[f.name] = _dump(value)
        return out


def _hints(cls: type) -> dict[str, Any]:
    cached = cls.__dict__.get("_wire_hints")
    if cached is None:
        cached = typing.get_type_hints(cls)
        cls._wire_hints = cached  # type: ignore[attr-defined]
    return cached


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (str, int, float, bool, Any, X | None, list, dict, Wire)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors: list[ApiError] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ApiError as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else ApiError(f"{where}: unexpected {_kind(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise ApiError(f"{where}: expected a list, got {_kind(value)}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ApiError(f"{where}: expected an object, got {_kind(value)}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Wire):
        return tp.from_json(value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ApiError(f"{where}: expected true or false, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(f"{where}: expected a whole number, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(f"{where}: expected a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ApiError(f"{where}: expected a string, got {_kind(value)}")
        return value
    raise TypeError(f"{where}: the contract cannot check type {tp!r}")  # a bug in this module


def _dump(value: Any) -> Any:
    if isinstance(value, Wire):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def one_of(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ApiError(f"{where}: must be one of {', '.join(allowed)}, got {value!r}")


def nonempty(value: str, where: str) -> None:
    if not value.strip():
        raise ApiError(f"{where}: must not be empty")
