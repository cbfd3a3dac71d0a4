"""Database plumbing: URLs, engines, the embedded PostgreSQL (pgserver) and migrations."""
