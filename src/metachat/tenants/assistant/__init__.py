"""The tenant's assistant settings and its providers' API keys (encrypted at rest)."""
