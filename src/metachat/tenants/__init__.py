"""Tenants: the businesses on the platform and their API keys.

Owns: `tenants.tenant_ids` (the root of every tenant foreign key), `tenants.api_keys` (the
write-side key index) and the `tenant_directory` read model.
Publishes: `tenants.tenant_created`, `tenants.api_key_issued`, `tenants.api_key_revoked`.
Consumes: nothing.
"""
