"""Every connection string form libpq accepts becomes a working psycopg URL."""

import pytest

from metachat.database.engine import libpq_url, sqlalchemy_url
from metachat.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5433/app", "postgresql+psycopg://u:p@db:5433/app"),
        ("postgres://u@db/app", "postgresql+psycopg://u@db/app"),
        (
            "postgresql://u@/app?host=/run/postgresql",
            "postgresql+psycopg://u@/app?host=%2Frun%2Fpostgresql",
        ),
        (
            "host=/run/postgresql dbname=app user=u",
            "postgresql+psycopg://u@/app?host=%2Frun%2Fpostgresql",
        ),
        (
            "host=db port=5433 dbname=app user=u password=s sslmode=require",
            "postgresql+psycopg://u:s@/app?host=db&port=5433&sslmode=require",
        ),
    ],
)
def test_connection_string_forms(given: str, expected: str) -> None:
    assert sqlalchemy_url(given).render_as_string(hide_password=False) == expected


def test_libpq_url_round_trips_keyword_strings() -> None:
    assert libpq_url("host=/tmp/pg dbname=app user=u") == "postgresql://u@/app?host=%2Ftmp%2Fpg"


@pytest.mark.parametrize("good", ["postgresql://u@h/d", "host=/tmp dbname=x"])
def test_settings_accept_urls_and_keyword_strings(good: str) -> None:
    assert load_settings({"METACHAT_DATABASE_URL": good}).database_url == good


@pytest.mark.parametrize("bad", ["mysql://u@h/d", "not a dsn", "host"])
def test_settings_refuse_other_strings(bad: str) -> None:
    with pytest.raises(SettingsError, match="METACHAT_DATABASE_URL"):
        load_settings({"METACHAT_DATABASE_URL": bad})
