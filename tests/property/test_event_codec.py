"""Every registered event round-trips the codec; every events.py class is registered."""

import importlib
import inspect
import pkgutil
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

import metachat
from metachat.bootstrap import build_registry
from metachat.eventstore.envelope import Event

REGISTRY = build_registry()


def _all_event_classes() -> set[type[Event]]:
    found: set[type[Event]] = set()
    for info in pkgutil.walk_packages(metachat.__path__, "metachat."):
        if info.name.endswith(".events"):
            module = importlib.import_module(info.name)
            found |= {
                obj
                for _, obj in inspect.getmembers(module, inspect.isclass)
                if issubclass(obj, Event) and obj is not Event and obj.__module__ == module.__name__
            }
    return found


def test_every_event_class_is_registered() -> None:
    classes = _all_event_classes()
    assert classes, "no events found"
    assert classes <= set(REGISTRY)


def test_type_names_are_dotted_and_unique() -> None:
    names = [cls.type for cls in REGISTRY]
    assert len(names) == len(set(names))
    assert all(name.count(".") == 1 and name == name.lower() for name in names)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _bounded(t: Any) -> st.SearchStrategy[Any]:  # noqa: PLR0911 - one branch per kind
    """Values of a msgspec type that honour its constraints (`from_type` ignores `Meta`)."""
    inspect_ = msgspec.inspect
    if isinstance(t, inspect_.StructType):
        return st.builds(t.cls, **{f.name: _bounded(f.type) for f in t.fields})
    if isinstance(t, inspect_.UnionType):
        return st.one_of([_bounded(member) for member in t.types])
    if isinstance(t, inspect_.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, inspect_.StrType):
        low, high = t.min_length or 0, min(t.max_length or 20, 20)
        if t.pattern is not None:
            return st.from_regex(t.pattern, fullmatch=True).filter(lambda v: low <= len(v) <= high)
        return st.text(min_size=low, max_size=high).filter(lambda v: "\x00" not in v)
    if isinstance(t, inspect_.IntType):
        return st.integers(
            t.ge if t.ge is not None else -(2**31), t.le if t.le is not None else 2**31
        )
    if isinstance(t, inspect_.FloatType):
        floor = float(t.ge if t.ge is not None else t.gt if t.gt is not None else -1e9)
        ceiling = float(t.le if t.le is not None else 1e9)
        return st.floats(floor, ceiling, exclude_min=t.gt is not None, allow_nan=False)
    if isinstance(t, (inspect_.VarTupleType, inspect_.ListType)):
        items = st.lists(_bounded(t.item_type), min_size=t.min_length or 0, max_size=3)
        return items.map(tuple) if isinstance(t, inspect_.VarTupleType) else items
    if isinstance(t, inspect_.DictType):
        values = (
            JSON_VALUES if isinstance(t.value_type, inspect_.AnyType) else _bounded(t.value_type)
        )
        return st.dictionaries(_bounded(t.key_type), values, max_size=3)
    if isinstance(t, inspect_.BoolType):
        return st.booleans()
    if isinstance(t, inspect_.NoneType):
        return st.none()
    raise AssertionError(f"no bounded strategy for {t!r}: extend _bounded")


def strategy(cls: type[Event]) -> st.SearchStrategy[Event]:
    """`from_type`, with JSON values where a field holds free-form data (`dict[str, Any]`) and
    constraint-honouring values where it holds a nested Struct (settings)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    overrides: dict[str, st.SearchStrategy[Any]] = {
        f.name: st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
        for f in info.fields
        if isinstance(f.type, msgspec.inspect.DictType)
        and isinstance(f.type.value_type, msgspec.inspect.AnyType)
    }
    overrides |= {
        f.name: _bounded(f.type)
        for f in info.fields
        if isinstance(f.type, msgspec.inspect.StructType)
    }
    return st.builds(cls, **overrides) if overrides else st.from_type(cls)


@given(st.data())
def test_every_registered_event_round_trips(data: st.DataObject) -> None:
    for cls in REGISTRY:
        event = data.draw(strategy(cls))
        wire = msgspec.json.decode(REGISTRY.encode(event))
        assert REGISTRY.decode(cls.type, cls.version, wire) == event
