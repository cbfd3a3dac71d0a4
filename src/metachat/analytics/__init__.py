"""Analytics: per-tenant activity figures built from the event stream.

Owns: `analytics.daily_activity` (events per tenant, UTC day and event type).
Publishes: nothing.
Consumes: every event (`#`), through the broker consumer `analytics.activity`.
"""

from metachat.analytics.queries import DailyActivity, list_daily_activity
from metachat.analytics.subscribers import ACTIVITY_CONSUMER

__all__ = ["ACTIVITY_CONSUMER", "DailyActivity", "list_daily_activity"]
