"""Worker roles: relay, projector and broker consumers (FastStream)."""
