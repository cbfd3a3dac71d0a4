"""The OpenAPI document lists every /v1 route and documents problem details."""

import re

from litestar import Litestar


async def test_openapi_document_lists_every_v1_route(client, app: Litestar) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    documented = {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    served = {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method)
        for route in app.routes
        if route.path.startswith("/v1/")
        for method in route.methods
        if method not in {"OPTIONS", "HEAD"}
    }
    assert served  # the app has /v1 routes at all
    assert served <= documented
    assert {
        ("/v1/tenant", "GET"),
        ("/v1/api-keys", "GET"),
        ("/v1/api-keys", "POST"),
        ("/v1/api-keys/{key_id}/rotate", "POST"),
        ("/v1/api-keys/{key_id}", "DELETE"),
    } <= documented


async def test_v1_routes_require_the_bearer_scheme_and_document_problems(client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert document["components"]["securitySchemes"]["api_key"]["scheme"] == "bearer"
    operation = document["paths"]["/v1/api-keys"]["post"]
    assert operation["security"] == [{"api_key": []}]
    assert "application/problem+json" in operation["responses"]["401"]["content"]
    assert "application/problem+json" in operation["responses"]["422"]["content"]
