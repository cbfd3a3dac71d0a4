"""Analytics: per-tenant activity figures built from the event stream."""
