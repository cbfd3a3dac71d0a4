"""Isolation, generated from the OpenAPI document: another tenant's ids are simply not found.

Every operation whose path takes an id is called with tenant A's fresh resources and tenant B's
credentials, and must answer 404. Nothing here lists routes: a new route is covered the day it
is served. A path parameter without a factory below fails the test with the name to add.
The body of each call is built from the operation's request schema, so that validation passes
and the answer is the lookup's, not a 422.
"""

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from metachat.bootstrap import Deps
from tests.integration.api.conftest import Tenant
from tests.integration.conversations.read_models_support import project

Client = AsyncTestClient[Litestar]
Factory = Callable[[Client, Tenant, dict[str, str]], Awaitable[str]]
"""Creates one resource of the tenant (given the ids already chosen for the path); its id."""

_PARAMETER = re.compile(r"{(\w+)}")
_METHODS = ("get", "post", "put", "patch", "delete")


async def _created(
    client: Client, tenant: Tenant, path: str, body: dict[str, Any], field: str = "id"
) -> str:
    answer = await client.post(path, json=body, headers=tenant.auth)
    assert answer.status_code == 201, f"factory POST {path}: {answer.status_code} {answer.text}"
    return str(answer.json()[field])


async def _api_key(client: Client, tenant: Tenant, _: dict[str, str]) -> str:
    return await _created(client, tenant, "/v1/api-keys", {"name": "isolation"})


async def _conversation(client: Client, tenant: Tenant, _: dict[str, str]) -> str:
    body = {"channel": "api", "customer_id": "customer-1", "metadata": {}}
    return await _created(client, tenant, "/v1/conversations", body)


async def _user(client: Client, tenant: Tenant, _: dict[str, str]) -> str:
    body = {"email": f"u{uuid.uuid4().hex[:12]}@example.com", "password": "correct-horse-12"}
    return await _created(client, tenant, "/v1/users", body, field="id")


FACTORIES: dict[str, Factory] = {
    "key_id": _api_key,
    "conversation_id": _conversation,
    "user_id": _user,
}
"""Path parameter name → how to create such a resource for a tenant. Add one per new id kind."""


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _string(schema: dict[str, Any]) -> str:
    formats = {
        "uuid": str(uuid.uuid4()),
        "date-time": "2099-01-01T00:00:00Z",
        "email": "someone@example.com",
    }
    value = formats.get(schema.get("format", ""), "x" * max(1, schema.get("minLength", 1)))
    pattern = schema.get("pattern")
    assert pattern is None or re.fullmatch(pattern, value), (
        f"cannot build a string for pattern {pattern!r}: give the field an `examples` value"
    )
    return value


def sample(document: dict[str, Any], schema: dict[str, Any]) -> Any:  # noqa: PLR0911 - one per type
    """A value valid for `schema`: its example, else the smallest thing each type allows."""
    schema = _resolve(document, schema)
    if schema.get("examples"):
        examples = schema["examples"]
        return examples[0] if isinstance(examples, list) else next(iter(examples.values()))
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            options = [_resolve(document, s) for s in schema[combinator]]
            usable = [s for s in options if s.get("type") != "null"] or options
            return sample(document, usable[0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        # Optional fields too: a handler may check a combination of them before its lookup.
        return {name: sample(document, p) for name, p in schema.get("properties", {}).items()}
    if kind == "array":
        return [sample(document, schema["items"])] * schema.get("minItems", 0)
    if kind in {"integer", "number"}:
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return _string(schema)


def _body(document: dict[str, Any], operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return sample(document, content["application/json"]["schema"])


def _streams(operation: dict[str, Any]) -> bool:
    return any(
        "text/event-stream" in answer.get("content", {})
        for answer in operation.get("responses", {}).values()
    )


async def _fill(client: Client, owner: Tenant, path: str) -> tuple[str, list[str]]:
    """The path with the owner's fresh ids, and the parameters nobody knows how to create."""
    ids: dict[str, str] = {}
    missing = []
    for name in _PARAMETER.findall(path):
        if name not in FACTORIES:
            missing.append(name)
            continue
        ids[name] = await FACTORIES[name](client, owner, ids)
    return path.format_map(ids) if not missing else path, missing


async def _check(
    client: Client, deps: Deps, document: dict[str, Any], route: tuple[str, str], tenants: Any
) -> str | None:
    """Call one operation as the stranger on the owner's resource; a failure's description."""
    (path, method), (owner, stranger) = route, tenants
    operation = document["paths"][path][method]
    url, missing = await _fill(client, owner, path)
    if missing:
        return f"{method.upper()} {path}: add a factory for {missing} to FACTORIES"
    body = _body(document, operation)
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    answer = await client.request(method.upper(), url, headers=stranger.auth, **kwargs)
    if answer.status_code != 404 or answer.json().get("code") != "not_found":
        return f"{method.upper()} {url} as another tenant: {answer.status_code} {answer.text}"
    if _streams(operation):
        # An event stream never ends for its owner; tests/integration/conversations/
        # test_stream.py shows the owner reads it.
        return None
    # The control: the owner is not refused the same way, so the 404 above was isolation, not
    # a resource the factory failed to make.
    url, _ = await _fill(client, owner, path)
    await project(deps)  # read models are filled by the projector, which this app does not run
    mine = await client.request(method.upper(), url, headers=owner.auth, **kwargs)
    if mine.status_code == 404:
        return f"{method.upper()} {url} answers 404 to its own tenant too: {mine.text}"
    return None


async def test_every_route_with_an_id_hides_other_tenants_resources(
    client: Client, api_deps: Deps, tenant: Tenant, other_tenant: Tenant
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    operations = [
        (path, method)
        for path, item in sorted(document["paths"].items())
        if _PARAMETER.search(path)
        for method in _METHODS
        if method in item
    ]
    assert operations, "the document has no route with an id: is the app assembled?"
    failures = [
        failure
        for path, method in operations
        if (
            failure := await _check(
                client, api_deps, document, (path, method), (tenant, other_tenant)
            )
        )
    ]
    assert not failures, "\n".join(failures)
    covered = {name for path, _ in operations for name in _PARAMETER.findall(path)}
    assert {"key_id", "conversation_id"} <= covered
