"""Login, refresh rotation with reuse detection, logout, expiry and every token mix-up."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from metachat.kernel.ids import uuid7
from metachat.tenants.users.tokens import Claims, TokenSigner
from tests.integration.api.conftest import assert_problem
from tests.integration.users.conftest import PASSWORD, login


class TestLogin:
    async def test_gives_a_pair_that_works(self, client, tenant, new_user) -> None:
        user = await new_user(tenant, "agent")
        response = await login(client, tenant.tenant_id, user.email.upper())
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {
            "access_token",
            "refresh_token",
            "access_expires_at",
            "refresh_expires_at",
        }
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200, me.text
        assert me.json()["user"]["id"] == str(user.user_id)
        assert me.json()["kind"] == "user"

    async def test_wrong_password_and_unknown_email_answer_alike(
        self, client, tenant, new_user
    ) -> None:
        user = await new_user(tenant)
        wrong = await login(client, tenant.tenant_id, user.email, "not the password at all")
        unknown = await login(client, tenant.tenant_id, "nobody@example.com")
        other_tenant = await login(client, uuid7(), user.email)
        bodies = [assert_problem(r, 401, "unauthenticated") for r in (wrong, unknown, other_tenant)]
        assert {b["detail"] for b in bodies} == {"invalid email or password"}

    async def test_a_deactivated_user_cannot_log_in(self, client, tenant, new_user) -> None:
        owner = await new_user(tenant)
        agent = await new_user(tenant, "agent")
        gone = await client.delete(f"/v1/users/{agent.user_id}", headers=owner.auth)
        assert gone.status_code == 204, gone.text
        assert_problem(await login(client, tenant.tenant_id, agent.email), 401, "unauthenticated")
        assert_problem(await client.get("/v1/me", headers=agent.auth), 401, "unauthenticated")
        refreshed = await client.post(
            "/v1/auth/refresh", json={"refresh_token": agent.refresh_token}
        )
        assert_problem(refreshed, 401, "unauthenticated")


class TestRefresh:
    async def test_rotates(self, client, tenant, new_user) -> None:
        user = await new_user(tenant)
        first = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert first.status_code == 200, first.text
        pair = first.json()
        assert pair["refresh_token"] != user.refresh_token
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
        assert me.status_code == 200
        second = await client.post(
            "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert second.status_code == 200, second.text

    async def test_reuse_revokes_the_whole_family(self, client, tenant, new_user) -> None:
        user = await new_user(tenant)
        rotated = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        newest = rotated.json()["refresh_token"]
        reused = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert_problem(reused, 401, "unauthenticated")
        # The thief's replay ended the legitimate holder's session too.
        after = await client.post("/v1/auth/refresh", json={"refresh_token": newest})
        assert_problem(after, 401, "unauthenticated")
        # Another login is another family, untouched.
        assert (await login(client, tenant.tenant_id, user.email)).status_code == 200

    async def test_logout_ends_the_session(self, client, tenant, new_user) -> None:
        user = await new_user(tenant)
        out = await client.post("/v1/auth/logout", json={"refresh_token": user.refresh_token})
        assert out.status_code == 204, out.text
        again = await client.post("/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert_problem(again, 401, "unauthenticated")


def _signed(signer: TokenSigner, user, typ, *, expires_in: timedelta) -> str:
    return signer.sign(
        Claims(
            typ=typ,
            tid=user.tenant_id,
            sub=user.user_id,
            exp=int((datetime.now(UTC) + expires_in).timestamp()),
            jti=uuid.uuid4(),
            role="owner" if typ == "access" else None,
            fam=uuid.uuid4() if typ == "refresh" else None,
        )
    )


class TestExpiryAndMixUps:
    async def test_an_expired_access_token_is_refused(
        self, client, tenant, new_user, api_settings
    ) -> None:
        user = await new_user(tenant)
        signer = TokenSigner(api_settings.secret_key.value)
        expired = _signed(signer, user, "access", expires_in=timedelta(seconds=-1))
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {expired}"})
        assert_problem(response, 401, "unauthenticated")
        fresh = _signed(signer, user, "access", expires_in=timedelta(minutes=1))
        assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {fresh}"})).is_success

    async def test_an_expired_refresh_token_is_refused(
        self, client, tenant, new_user, api_settings
    ) -> None:
        user = await new_user(tenant)
        signer = TokenSigner(api_settings.secret_key.value)
        expired = _signed(signer, user, "refresh", expires_in=timedelta(seconds=-1))
        response = await client.post("/v1/auth/refresh", json={"refresh_token": expired})
        assert_problem(response, 401, "unauthenticated")

    async def test_a_refresh_token_is_not_an_access_token(self, client, tenant, new_user) -> None:
        user = await new_user(tenant)
        response = await client.get(
            "/v1/me", headers={"Authorization": f"Bearer {user.refresh_token}"}
        )
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize("path", ["/v1/auth/refresh", "/v1/auth/logout"])
    async def test_an_access_token_or_api_key_is_not_a_refresh_token(
        self, client, tenant, new_user, path
    ) -> None:
        user = await new_user(tenant)
        for credential in (user.access_token, tenant.api_key):
            response = await client.post(path, json={"refresh_token": credential})
            assert_problem(response, 401, "unauthenticated")

    async def test_an_api_key_and_a_user_token_are_told_apart(
        self, client, tenant, new_user
    ) -> None:
        user = await new_user(tenant)
        as_key = await client.get("/v1/me", headers=tenant.auth)
        assert as_key.json()["kind"] == "api_key"
        assert as_key.json()["key_id"] == str(tenant.key_id)
        # A user token dressed as an API key, and an API key dressed as a user token.
        for bearer in (f"mck_{user.access_token}", f"mcu.{tenant.api_key}"):
            response = await client.get("/v1/me", headers={"Authorization": f"Bearer {bearer}"})
            assert_problem(response, 401, "unauthenticated")

    async def test_a_token_signed_with_another_secret_is_refused(
        self, client, tenant, new_user
    ) -> None:
        user = await new_user(tenant)
        forged = _signed(TokenSigner("x" * 40), user, "access", expires_in=timedelta(minutes=5))
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
        assert_problem(response, 401, "unauthenticated")


async def test_password_is_never_answered(client, tenant, new_user) -> None:
    user = await new_user(tenant)
    listed = await client.get("/v1/users", headers=user.auth)
    assert PASSWORD not in listed.text
    assert "argon2" not in listed.text
