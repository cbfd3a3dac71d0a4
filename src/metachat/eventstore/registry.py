"""The single registry: stable type names to event Structs, with upcasters for old versions."""

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from metachat.eventstore.envelope import Event

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_encoder = msgspec.json.Encoder()


class UnknownEventTypeError(LookupError):
    """A stored event names a type (or a version) that no registered Struct can read."""


class EventRegistry:
    """Maps `type` to the current Struct; upcasts payloads written under older versions."""

    def __init__(self, events: Iterable[type[Event]] = ()) -> None:
        self._types: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for cls in events:
            self.register(cls)

    def register(self, cls: type[Event]) -> None:
        """Add one event Struct; a type name may be registered once."""
        if not cls.type or "." not in cls.type:
            raise ValueError(f"{cls.__name__} needs a dotted `type` class variable")
        if cls.type in self._types and self._types[cls.type] is not cls:
            raise ValueError(f"event type {cls.type!r} is registered twice")
        self._types[cls.type] = cls

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning a `from_version` payload into a `from_version + 1` one."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_name, from_version)] = fn
            return fn

        return decorate

    def __iter__(self) -> Any:
        return iter(self._types.values())

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types

    def resolve(self, type_name: str) -> type[Event]:
        """Return the current Struct for a type name."""
        try:
            return self._types[type_name]
        except KeyError:
            raise UnknownEventTypeError(type_name) from None

    def encode(self, event: Event) -> bytes:
        """Encode a payload to JSON bytes (the stored and published form)."""
        if type(event).type not in self._types:
            raise UnknownEventTypeError(type(event).type)
        return _encoder.encode(event)

    def to_builtins(self, event: Event) -> dict[str, Any]:
        """Return the payload as plain JSON-compatible values."""
        result: dict[str, Any] = msgspec.to_builtins(event)
        return result

    def decode(self, type_name: str, version: int, payload: dict[str, Any]) -> Event:
        """Decode a stored payload, upcasting it step by step to the current version."""
        cls = self.resolve(type_name)
        if version > cls.version:
            raise UnknownEventTypeError(f"{type_name} v{version} is newer than this code")
        data = payload
        for step in range(version, cls.version):
            try:
                data = self._upcasters[(type_name, step)](data)
            except KeyError:
                raise UnknownEventTypeError(f"no upcaster for {type_name} v{step}") from None
        return msgspec.convert(data, cls, strict=False)
