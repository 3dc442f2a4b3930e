"""Alembic migrations: the only author of the database schema."""
