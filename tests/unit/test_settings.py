"""Settings: every problem named at once, production without secrets refused, examples load."""

from pathlib import Path

import pytest

from metachat.settings import _FIELDS, SECRET_VARIABLES, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
GOOD_SECRET = "s" * 40


def read_env_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """Return (assigned variables, every variable named, commented-out ones included)."""
    assigned: dict[str, str] = {}
    named: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        commented = line.startswith("#")
        body = line.lstrip("#").strip()
        if "=" not in body or not body.startswith("METACHAT_"):
            continue
        name, _, value = body.partition("=")
        named.add(name)
        if not commented:
            assert name not in assigned, f"{name} assigned twice in {path.name}"
            assigned[name] = value
    return assigned, named


class TestLoadSettings:
    def test_defaults_without_any_variable(self) -> None:
        settings = load_settings({})
        assert settings.env == "development"
        assert settings.port == 8000
        assert settings.database_url is None

    def test_reads_sections_and_the_port(self) -> None:
        settings = load_settings(
            {
                "METACHAT_PORT": "9001",
                "METACHAT_RELAY__HEARTBEAT_STALE_AFTER": "12.5",
                "METACHAT_AMQP__QUEUE_PREFIX": "x.",
            }
        )
        assert settings.port == 9001
        assert settings.relay.heartbeat_stale_after == 12.5
        assert settings.amqp.queue_prefix == "x."

    def test_names_every_bad_variable_in_one_message(self) -> None:
        bad = {
            "METACHAT_PORT": "99999",
            "METACHAT_LOG_LEVEL": "LOUD",
            "METACHAT_AMQP_URL": "http://rabbit",
            "METACHAT_RELAY__BATCH_SIZE": "0",
            "METACHAT_LOG_JSON": "maybe",
            "METACHAT_NOT_A_SETTING": "1",
        }
        with pytest.raises(SettingsError) as caught:
            load_settings(bad)
        message = str(caught.value)
        for name in bad:
            assert name in message
        assert len(caught.value.problems) == len(bad)
        assert f"({len(bad)} problem(s))" in message

    def test_never_echoes_a_bad_secret(self) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings({"METACHAT_SECRET_KEY": "short-secret-value"})
        assert "short-secret-value" not in str(caught.value)
        assert "METACHAT_SECRET_KEY" in str(caught.value)

    def test_production_without_secrets_names_each_missing_variable(self) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings({"METACHAT_ENV": "production"})
        message = str(caught.value)
        for name in (*SECRET_VARIABLES, "METACHAT_DATABASE_URL", "METACHAT_AMQP_URL"):
            assert name in message
        assert len(caught.value.problems) == len(SECRET_VARIABLES) + 2

    def test_production_with_one_secret_missing_names_only_that_one(self) -> None:
        environ = {
            "METACHAT_ENV": "production",
            "METACHAT_SECRET_KEY": GOOD_SECRET,
            "METACHAT_DATABASE_URL": "postgresql://u:p@db/metachat",
            "METACHAT_AMQP_URL": "amqp://u:p@mq:5672/",
        }
        with pytest.raises(SettingsError) as caught:
            load_settings(environ)
        assert caught.value.problems == [
            "METACHAT_API_KEY_PEPPER: required when METACHAT_ENV=production (no fallback secrets)"
        ]


class TestEnvExamples:
    @pytest.mark.parametrize("name", [".env.example", ".env.production.example"])
    def test_lists_every_variable(self, name: str) -> None:
        _, named = read_env_file(REPO / name)
        assert named == set(_FIELDS)

    def test_development_example_loads(self) -> None:
        assigned, _ = read_env_file(REPO / ".env.example")
        settings = load_settings(assigned)
        assert settings.env == "development"
        assert settings.database_url is None  # the embedded PostgreSQL

    def test_production_example_refuses_its_placeholders_and_loads_once_filled_in(self) -> None:
        assigned, _ = read_env_file(REPO / ".env.production.example")
        assert set(assigned) == set(_FIELDS)
        with pytest.raises(SettingsError) as refused:
            load_settings(assigned)
        for name in (
            "METACHAT_SECRET_KEY",
            "METACHAT_API_KEY_PEPPER",
            "METACHAT_DATABASE_URL",
            "METACHAT_AMQP_URL",
        ):
            assert name in str(refused.value)
        filled = {k: v.replace("CHANGE-ME", "filled-in") for k, v in assigned.items()}
        settings = load_settings(filled)
        assert settings.is_production
        assert settings.secret_key is not None
        assert settings.api_key_pepper is not None


class TestLlmSettings:
    def test_allowed_hosts_and_price_overrides(self) -> None:
        settings = load_settings(
            {
                "METACHAT_LLM__ALLOWED_HOSTS": "Ollama.internal, vllm.internal",
                "METACHAT_LLM__PRICES": '{"my-model": {"input": 1, "output": "2.5"}}',
            }
        )
        assert settings.llm.allowed_hosts == ("ollama.internal", "vllm.internal")
        assert settings.llm.prices == {"my-model": {"input": "1", "output": "2.5"}}

    def test_the_call_rate_wait_bound(self) -> None:
        assert load_settings({}).llm.call_rate_max_wait_seconds == 20.0
        given = load_settings({"METACHAT_LLM__CALL_RATE_MAX_WAIT_SECONDS": "2.5"})
        assert given.llm.call_rate_max_wait_seconds == 2.5
        with pytest.raises(SettingsError, match="METACHAT_LLM__CALL_RATE_MAX_WAIT_SECONDS"):
            load_settings({"METACHAT_LLM__CALL_RATE_MAX_WAIT_SECONDS": "-1"})

    def test_a_bad_price_table_is_named(self) -> None:
        with pytest.raises(SettingsError, match="METACHAT_LLM__PRICES"):
            load_settings({"METACHAT_LLM__PRICES": '{"m": {"input": 1}}'})
