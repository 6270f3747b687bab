"""Alembic migrations of the catalog schema; `storage.migrate` runs them."""
