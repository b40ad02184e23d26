"""Persistence: SQLModel tables, the engine and sessions, and Alembic migrations.

Schema changes go only through migrations (`cjo db upgrade`); business rules live in
`cjo.activities`, not here.
"""
