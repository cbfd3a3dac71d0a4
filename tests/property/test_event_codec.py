"""Every registered event round-trips the codec; every events.py class is registered."""

import importlib
import inspect
import pkgutil

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


def strategy(cls: type[Event]) -> st.SearchStrategy[Event]:
    """`from_type`, with JSON values where a field holds free-form data (`dict[str, Any]`)."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    free = {
        f.name: st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)
        for f in info.fields
        if isinstance(f.type, msgspec.inspect.DictType)
        and isinstance(f.type.value_type, msgspec.inspect.AnyType)
    }
    return st.builds(cls, **free) if free else st.from_type(cls)


@given(st.data())
def test_every_registered_event_round_trips(data: st.DataObject) -> None:
    for cls in REGISTRY:
        event = data.draw(strategy(cls))
        wire = msgspec.json.decode(REGISTRY.encode(event))
        assert REGISTRY.decode(cls.type, cls.version, wire) == event
