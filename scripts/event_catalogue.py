"""Write (or check) architecture/events.md, the event catalogue, from the event registry.

uv run python scripts/event_catalogue.py          # rewrite the file
uv run python scripts/event_catalogue.py --check  # exit 1 if the file is out of date
"""

import sys
from pathlib import Path

import msgspec

from metachat.bootstrap import build_registry

PATH = Path(__file__).resolve().parents[1] / "architecture" / "events.md"

HEADER = """# Event catalogue

Generated from the event registry by `scripts/event_catalogue.py`; a test fails when this file
and the registry disagree. Every event travels in the envelope described in
`decisions/0001-event-store.md` and is published to the `metachat.events` topic exchange with
routing key `<tenant id>.<type>`.

| type | version | module | meaning | payload fields |
| --- | --- | --- | --- | --- |
"""


def _fields(cls: type) -> str:
    info = msgspec.inspect.type_info(cls)
    if not isinstance(info, msgspec.inspect.StructType):
        raise TypeError(f"{cls} is not a Struct")
    parts = []
    for field in info.fields:
        kind = type(field.type).__name__.removesuffix("Type").lower()
        optional = "" if field.required else "?"
        parts.append(f"`{field.name}{optional}`: {kind}")
    return ", ".join(parts)


def render() -> str:
    """Return the catalogue's text."""
    rows = []
    for cls in sorted(build_registry(), key=lambda c: c.type):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        module = cls.__module__.removeprefix("metachat.")
        rows.append(f"| `{cls.type}` | {cls.version} | `{module}` | {doc} | {_fields(cls)} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not PATH.exists() or PATH.read_text() != text:
            print(f"{PATH} is out of date: run uv run python scripts/event_catalogue.py")
            return 1
        return 0
    PATH.write_text(text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
