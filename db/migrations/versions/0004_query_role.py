"""PostgreSQL: the role ``cellpipe_reader`` that ``cellpipe query`` and ``export`` run as.

``cellpipe_reader`` is a NOLOGIN role without any attribute (not a superuser, cannot
create roles or databases, no membership in ``pg_read_server_files`` and friends) that
may use the schema and SELECT cellpipe's tables and views, nothing else: no server files,
no ``lo_import``/``lo_export``, no ``COPY … TO`` a file, no writes. Tables that later
migrations create are readable by it too (default privileges of the migrating role).
The migrating role becomes a member of it, so that a non-superuser owner can
``SET ROLE cellpipe_reader`` (:mod:`cellpipe.db.postgres_isolation`).

Roles belong to the whole server, not to one database: the role is created once, by the
first database upgraded, and each database grants it SELECT on its own tables. Creating
it needs the CREATEROLE attribute (or a superuser); without it, the upgrade goes on and
``cellpipe db upgrade`` says what an administrator has to run. The downgrade revokes this
database's grants but keeps the role, which other databases may use. SQLite has no roles.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out rather than imported: a migration must keep doing what it did.
READER = "cellpipe_reader"
READABLE = (
    "images", "runs", "models", "segmentations", "cells", "alembic_version",
    "latest_segmentations", "cell_metrics", "image_summary",
)

CREATE_AND_GRANT = f"""
DO $$
DECLARE
    migrator_is_superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        BEGIN
            CREATE ROLE {READER} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT
                NOREPLICATION NOBYPASSRLS;
        EXCEPTION
            -- Another database of this server was upgraded at the same moment.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE WARNING 'role {READER} not created: % has no CREATEROLE', current_user;
                RETURN;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {READER}', current_schema());
    GRANT SELECT ON {", ".join(READABLE)} TO {READER};
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO {READER}', current_schema());
    IF NOT migrator_is_superuser AND NOT pg_has_role(current_user, '{READER}', 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT {READER} TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE WARNING '% cannot be made a member of {READER}', current_user;
        END;
    END IF;
END
$$
"""

REVOKE = f"""
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER}') THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE SELECT ON TABLES FROM {READER}', current_schema());
        REVOKE SELECT ON {", ".join(READABLE)} FROM {READER};
        EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM {READER}', current_schema());
    END IF;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CREATE_AND_GRANT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REVOKE)
