"""Tenant aggregate: given events, when a command, then events (or a refusal)."""

import uuid

import pytest

from metachat.eventstore.envelope import Event
from metachat.kernel.errors import ConflictError, NotFoundError, ValidationError
from metachat.tenants import model
from metachat.tenants.commands import CreateTenant, RenameTenant, RevokeApiKey
from metachat.tenants.events import ApiKeyIssued, ApiKeyRevoked, TenantCreated, TenantRenamed
from tests.builders.tenants import a_key_issued, a_tenant_created, issue_key


def given(*events: Event) -> model.TenantState:
    return model.replay(list(events))


class TestCreateTenant:
    def test_creates_a_tenant(self) -> None:
        tenant_id = uuid.uuid4()
        then = model.decide(given(), CreateTenant(tenant_id=tenant_id, name="  Acme  "))
        assert then == [TenantCreated(tenant_id=tenant_id, name="Acme")]

    def test_rejects_a_second_creation(self) -> None:
        created = a_tenant_created()
        with pytest.raises(ConflictError):
            model.decide(given(created), CreateTenant(tenant_id=created.tenant_id, name="Again"))

    @pytest.mark.parametrize("name", ["", "   ", "x" * 201])
    def test_rejects_bad_names(self, name: str) -> None:
        with pytest.raises(ValidationError):
            model.decide(given(), CreateTenant(tenant_id=uuid.uuid4(), name=name))


class TestRenameTenant:
    def test_renames(self) -> None:
        assert model.decide(given(a_tenant_created()), RenameTenant(name="Beta")) == [
            TenantRenamed(name="Beta")
        ]

    def test_same_name_changes_nothing(self) -> None:
        assert model.decide(given(a_tenant_created(name="Acme")), RenameTenant(name="Acme")) == []

    def test_rejects_rename_of_missing_tenant(self) -> None:
        with pytest.raises(NotFoundError):
            model.decide(given(), RenameTenant(name="Beta"))


class TestIssueApiKey:
    def test_issues_a_key_with_sorted_unique_scopes(self) -> None:
        command = issue_key(scopes=("tenant:read", "keys:manage", "tenant:read"))
        [event] = model.decide(given(a_tenant_created()), command)
        assert isinstance(event, ApiKeyIssued)
        assert event.key_id == command.key_id
        assert event.scopes == ["keys:manage", "tenant:read"]

    @pytest.mark.parametrize("scopes", [(), ("root",), ("tenant:read", "everything")])
    def test_rejects_unknown_or_empty_scopes(self, scopes: tuple[str, ...]) -> None:
        with pytest.raises(ValidationError):
            model.decide(given(a_tenant_created()), issue_key(scopes=scopes))

    def test_rejects_more_than_the_active_key_limit(self) -> None:
        history = [a_tenant_created()] + [a_key_issued() for _ in range(model.MAX_ACTIVE_KEYS)]
        with pytest.raises(ConflictError):
            model.decide(given(*history), issue_key())

    def test_rejects_a_key_id_already_used(self) -> None:
        key = a_key_issued()
        with pytest.raises(ConflictError):
            model.decide(given(a_tenant_created(), key), issue_key(key.key_id))

    def test_rotation_issues_the_new_key_and_revokes_the_old(self) -> None:
        old = a_key_issued()
        command = issue_key(replaces=old.key_id)
        then = model.decide(given(a_tenant_created(), old), command)
        assert [type(e) for e in then] == [ApiKeyIssued, ApiKeyRevoked]
        assert then[1] == ApiKeyRevoked(key_id=old.key_id, reason="rotated")

    def test_rejects_rotation_of_a_revoked_key(self) -> None:
        old = a_key_issued()
        revoked = ApiKeyRevoked(key_id=old.key_id, reason="revoked")
        with pytest.raises(NotFoundError):
            model.decide(given(a_tenant_created(), old, revoked), issue_key(replaces=old.key_id))


class TestRevokeApiKey:
    def test_revokes(self) -> None:
        key = a_key_issued()
        then = model.decide(given(a_tenant_created(), key), RevokeApiKey(key_id=key.key_id))
        assert then == [ApiKeyRevoked(key_id=key.key_id, reason="revoked")]

    def test_revoking_twice_changes_nothing(self) -> None:
        key = a_key_issued()
        history = given(a_tenant_created(), key, ApiKeyRevoked(key_id=key.key_id, reason="revoked"))
        assert model.decide(history, RevokeApiKey(key_id=key.key_id)) == []

    def test_rejects_unknown_key(self) -> None:
        with pytest.raises(NotFoundError):
            model.decide(given(a_tenant_created()), RevokeApiKey(key_id=uuid.uuid4()))


class TestEvolve:
    def test_revoked_keys_are_inactive(self) -> None:
        key = a_key_issued()
        state = given(a_tenant_created(), key, ApiKeyRevoked(key_id=key.key_id, reason="x"))
        assert state.keys[key.key_id].active is False
