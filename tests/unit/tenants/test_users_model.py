"""Users aggregate: given events, when a command, then events (or a refusal)."""

import uuid

import pytest

from metachat.eventstore.envelope import Event
from metachat.kernel.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from metachat.tenants.commands import SCOPES, ChangeUserRole, CreateUser, DeactivateUser, Role
from metachat.tenants.events import UserCreated, UserDeactivated, UserRoleChanged
from metachat.tenants.users import model

OWNER = uuid.UUID(int=1)
ADMIN = uuid.UUID(int=2)
AGENT = uuid.UUID(int=3)


def given(*events: Event) -> model.UsersState:
    return model.replay(list(events))


def created(user_id: uuid.UUID, role: Role, email: str | None = None) -> UserCreated:
    return UserCreated(user_id=user_id, email=email or f"{user_id.int}@example.com", role=role)


TEAM = (created(OWNER, "owner"), created(ADMIN, "admin"), created(AGENT, "agent"))


class TestCreateUser:
    def test_creates_a_user(self) -> None:
        new = uuid.uuid4()
        then = model.decide(
            given(), CreateUser(user_id=new, email=" Ada@Example.com ", role="owner")
        )
        assert then == [UserCreated(user_id=new, email="Ada@Example.com", role="owner")]

    def test_email_is_unique_regardless_of_case(self) -> None:
        with pytest.raises(ConflictError):
            model.decide(
                given(created(OWNER, "owner", "ada@example.com")),
                CreateUser(user_id=uuid.uuid4(), email="ADA@example.COM", role="agent"),
            )

    @pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.com", "a b@example.com"])
    def test_rejects_malformed_emails(self, email: str) -> None:
        with pytest.raises(ValidationError):
            model.decide(given(), CreateUser(user_id=uuid.uuid4(), email=email, role="agent"))

    def test_rejects_an_unknown_role(self) -> None:
        command = CreateUser(user_id=uuid.uuid4(), email="a@example.com", role="root")  # type: ignore[arg-type]
        with pytest.raises(ValidationError):
            model.decide(given(), command)

    def test_rejects_a_duplicate_id(self) -> None:
        with pytest.raises(ConflictError):
            model.decide(
                given(*TEAM), CreateUser(user_id=OWNER, email="new@example.com", role="agent")
            )

    def test_an_admin_creates_admins_and_agents_but_not_owners(self) -> None:
        for role in ("admin", "agent"):
            command = CreateUser(
                user_id=uuid.uuid4(), email=f"{role}2@example.com", role=role, by_role="admin"
            )
            assert model.decide(given(*TEAM), command)
        owner = CreateUser(
            user_id=uuid.uuid4(), email="o2@example.com", role="owner", by_role="admin"
        )
        with pytest.raises(PermissionDeniedError):
            model.decide(given(*TEAM), owner)

    def test_an_agent_manages_no_one(self) -> None:
        command = CreateUser(
            user_id=uuid.uuid4(), email="x@example.com", role="agent", by_role="agent"
        )
        with pytest.raises(PermissionDeniedError):
            model.decide(given(*TEAM), command)


class TestChangeRole:
    def test_promotes(self) -> None:
        then = model.decide(given(*TEAM), ChangeUserRole(user_id=AGENT, role="admin"))
        assert then == [UserRoleChanged(user_id=AGENT, role="admin", previous_role="agent")]

    def test_same_role_changes_nothing(self) -> None:
        assert model.decide(given(*TEAM), ChangeUserRole(user_id=AGENT, role="agent")) == []

    def test_the_last_active_owner_cannot_be_demoted(self) -> None:
        with pytest.raises(ConflictError):
            model.decide(given(*TEAM), ChangeUserRole(user_id=OWNER, role="admin"))

    def test_an_owner_can_be_demoted_while_another_remains(self) -> None:
        state = given(*TEAM, UserRoleChanged(user_id=ADMIN, role="owner", previous_role="admin"))
        then = model.decide(state, ChangeUserRole(user_id=OWNER, role="agent", by_role="owner"))
        assert then == [UserRoleChanged(user_id=OWNER, role="agent", previous_role="owner")]

    def test_a_deactivated_owner_does_not_count(self) -> None:
        second = created(uuid.UUID(int=4), "owner")
        state = given(*TEAM, second, UserDeactivated(user_id=second.user_id))
        with pytest.raises(ConflictError):
            model.decide(state, ChangeUserRole(user_id=OWNER, role="admin"))

    @pytest.mark.parametrize(("user_id", "role"), [(AGENT, "owner"), (OWNER, "agent")])
    def test_an_admin_cannot_promote_to_or_change_an_owner(
        self, user_id: uuid.UUID, role: Role
    ) -> None:
        state = given(*TEAM, created(uuid.UUID(int=4), "owner"))
        with pytest.raises(PermissionDeniedError):
            model.decide(state, ChangeUserRole(user_id=user_id, role=role, by_role="admin"))

    def test_an_agent_cannot_change_roles(self) -> None:
        with pytest.raises(PermissionDeniedError):
            model.decide(given(*TEAM), ChangeUserRole(user_id=AGENT, role="admin", by_role="agent"))

    def test_unknown_user_is_not_found(self) -> None:
        with pytest.raises(NotFoundError):
            model.decide(given(*TEAM), ChangeUserRole(user_id=uuid.uuid4(), role="admin"))

    def test_a_deactivated_user_keeps_its_role(self) -> None:
        with pytest.raises(ConflictError):
            model.decide(
                given(*TEAM, UserDeactivated(user_id=AGENT)),
                ChangeUserRole(user_id=AGENT, role="admin"),
            )


class TestDeactivate:
    def test_deactivates(self) -> None:
        then = model.decide(given(*TEAM), DeactivateUser(user_id=AGENT, by_role="admin"))
        assert then == [UserDeactivated(user_id=AGENT)]

    def test_twice_changes_nothing(self) -> None:
        state = given(*TEAM, UserDeactivated(user_id=AGENT))
        assert model.decide(state, DeactivateUser(user_id=AGENT)) == []

    def test_the_last_active_owner_stays(self) -> None:
        with pytest.raises(ConflictError):
            model.decide(given(*TEAM), DeactivateUser(user_id=OWNER, by_role="owner"))

    def test_an_admin_cannot_deactivate_an_owner(self) -> None:
        state = given(*TEAM, created(uuid.UUID(int=4), "owner"))
        with pytest.raises(PermissionDeniedError):
            model.decide(state, DeactivateUser(user_id=OWNER, by_role="admin"))

    def test_unknown_user_is_not_found(self) -> None:
        with pytest.raises(NotFoundError):
            model.decide(given(*TEAM), DeactivateUser(user_id=uuid.uuid4()))


class TestEvolve:
    def test_replays_the_team(self) -> None:
        state = given(
            *TEAM,
            UserRoleChanged(user_id=AGENT, role="admin", previous_role="agent"),
            UserDeactivated(user_id=ADMIN),
        )
        assert state.users[AGENT].role == "admin"
        assert not state.users[ADMIN].active
        assert state.active_owners() == 1


class TestScopes:
    def test_owners_and_admins_hold_every_scope(self) -> None:
        assert model.scopes_for("owner") == model.scopes_for("admin") == frozenset(SCOPES)

    def test_agents_read_and_work_conversations(self) -> None:
        assert model.scopes_for("agent") == {
            "tenant:read",
            "conversations:read",
            "conversations:write",
        }
