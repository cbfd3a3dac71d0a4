"""Tenant users: accounts with roles, password login and rotating refresh tokens."""
