"""The schema as releases before migrations made it with ``create_all``: users and kept messages.

Tables already present are kept as they are: a database made by such a release is adopted by this
revision without losing a row (``user`` was always made; ``message`` only with history on).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    if "user" not in present:
        op.create_table(
            "user",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("user_name", sa.String(255), nullable=False, unique=True),
            sa.Column("password", sa.String(255), nullable=False),
            sa.Column("create_time", sa.DateTime, nullable=False),
        )
    if "message" not in present:
        op.create_table(
            "message",
            sa.Column("id", sa.String(41), primary_key=True),
            sa.Column("ms", sa.BigInteger, nullable=False),
            sa.Column("seq", sa.BigInteger, nullable=False),
            sa.Column("conversation", sa.String(64), nullable=False),
            sa.Column("recipient", sa.BigInteger, nullable=False),
            sa.Column("op", sa.SmallInteger, nullable=False),
            sa.Column("body", sa.LargeBinary, nullable=False),
        )
        op.create_index("ix_message_conversation", "message", ["conversation", "ms", "seq"])
        op.create_index("ix_message_recipient", "message", ["recipient", "ms", "seq"])


def downgrade() -> None:
    op.drop_table("message")
    op.drop_table("user")
