"""The event catalogue in architecture/ stays in step with the registry."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "event_catalogue.py"


def test_catalogue_matches_registry() -> None:
    spec = importlib.util.spec_from_file_location("event_catalogue", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PATH.read_text() == module.render(), (
        "run: uv run python scripts/event_catalogue.py"
    )
