"""A random identity of this database, one row: logic and task record it in Redis at their first
start, and a process whose database holds another identity refuses to start (two hosts on two
databases would hand out the same user ids and the same names twice).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "database_identity",
        sa.Column("identity", sa.String(36), primary_key=True),
        sa.Column("create_time", sa.DateTime, nullable=False),
    )
    op.bulk_insert(table, [{"identity": str(uuid.uuid4()), "create_time": datetime.now(UTC).replace(tzinfo=None)}])


def downgrade() -> None:
    op.drop_table("database_identity")
