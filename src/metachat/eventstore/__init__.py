"""Shared kernel of the backbone: envelope, registry, stores, outbox relay, consumers, projections."""
