"""Backbone shared kernel: envelope, registry, stores, outbox relay, consumers, projections."""
