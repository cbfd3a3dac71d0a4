"""The `metachat` command line: run roles, migrate, manage tenants, projections and DLQs."""
