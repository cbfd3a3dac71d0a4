"""Replaying a tenant's stream from the store gives the state built live, command by command."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from metachat.bootstrap import build_registry
from metachat.eventstore.envelope import Event, Metadata
from metachat.eventstore.store import InMemoryEventStore
from metachat.kernel.actors import Actor
from metachat.kernel.errors import DomainError
from metachat.tenants import model
from metachat.tenants.commands import SCOPES, CreateTenant, RenameTenant, RevokeApiKey
from tests.builders.tenants import issue_key

KEY_IDS = [uuid.UUID(int=i) for i in range(1, 6)]

commands = st.one_of(
    st.builds(RenameTenant, name=st.text(min_size=0, max_size=20)),
    st.builds(
        lambda k, s: issue_key(k, scopes=tuple(s)),
        st.sampled_from(KEY_IDS),
        st.lists(st.sampled_from(SCOPES), min_size=1, max_size=3),
    ),
    st.builds(lambda k: RevokeApiKey(key_id=k), st.sampled_from(KEY_IDS)),
    st.builds(
        lambda k, old: issue_key(k, replaces=old),
        st.sampled_from(KEY_IDS),
        st.sampled_from(KEY_IDS),
    ),
)


@given(st.lists(commands, max_size=25))
async def test_replay_equals_live_state(script: list[model.Command]) -> None:
    store = InMemoryEventStore(build_registry())
    tenant_id = uuid.uuid4()
    meta = Metadata(tenant_id=tenant_id, actor=Actor.system(), correlation_id=uuid.uuid4())
    stream = model.stream_id(tenant_id)
    live = model.TenantState()
    version = 0
    for command in [CreateTenant(tenant_id=tenant_id, name="Acme"), *script]:
        try:
            events: list[Event] = model.decide(live, command)
        except DomainError:
            continue
        await store.append(stream, events, expected_version=version, metadata=meta)
        version += len(events)
        for event in events:
            live = model.evolve(live, event)
    replayed = model.replay([r.event for r in await store.read_stream(stream)])
    assert replayed == live
