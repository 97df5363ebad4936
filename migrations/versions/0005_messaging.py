"""messaging: per-salon settings, outbound messages under an idempotency key, inbound replies, opt-outs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from models.db import JSONType

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

WAITING = sa.text("state IN ('planned', 'queued')")
QUEUED = sa.text("state = 'queued'")
SENDING = sa.text("state = 'sending'")


def upgrade() -> None:
    op.create_table(
        'messaging_settings',
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('disabled_kinds', JSONType, nullable=False),
        sa.Column('reminders', JSONType, nullable=True),
        sa.Column('reask_at', sa.String(length=5), nullable=True),
        sa.Column('quiet_start', sa.String(length=5), nullable=True),
        sa.Column('quiet_end', sa.String(length=5), nullable=True),
        sa.Column('templates', JSONType, nullable=False),
        sa.Column('contact_phone', sa.String(length=32), nullable=True),
        sa.Column('cancel_writes_attendance', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_messaging_settings_company_id_companies'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('company_id', name=op.f('pk_messaging_settings')),
    )
    op.create_table(
        'messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('booking_id', sa.Integer(), nullable=True),
        sa.Column('phone', sa.String(length=32), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('slot', sa.String(length=100), nullable=False),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('priority', sa.SmallInteger(), nullable=False),
        sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('gateway_message_id', sa.String(length=128), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=255), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sending_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('handed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('read_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_messages_booking_id_bookings'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_messages_company_id_companies'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_messages_idempotency_key')),
    )
    op.create_index('ix_messages_waiting_due', 'messages', ['due_at'], postgresql_where=WAITING,
                    sqlite_where=WAITING)
    op.create_index('ix_messages_company_created', 'messages', ['company_id', 'id'])
    op.create_index('ix_messages_booking', 'messages', ['booking_id'])
    op.create_index('ix_messages_gateway_id', 'messages', ['gateway_message_id'])
    op.create_index('ix_messages_queued', 'messages', ['company_id'], postgresql_where=QUEUED, sqlite_where=QUEUED)
    op.create_index('ix_messages_sending', 'messages', ['sending_at'], postgresql_where=SENDING,
                    sqlite_where=SENDING)
    op.create_table(
        'inbound_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('gateway_message_id', sa.String(length=128), nullable=False),
        sa.Column('phone', sa.String(length=32), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('meaning', sa.String(length=16), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('booking_id', sa.Integer(), nullable=True),
        sa.Column('yclients_write', sa.String(length=16), nullable=False),
        sa.Column('write_attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_inbound_messages_booking_id_bookings'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_inbound_messages_company_id_companies'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_inbound_messages_message_id_messages'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_messages')),
        sa.UniqueConstraint('company_id', 'gateway_message_id', name='uq_inbound_messages_company_gateway_id'),
    )
    op.create_index('ix_inbound_messages_company_received', 'inbound_messages', ['company_id', 'id'])
    op.create_table(
        'opt_outs',
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('phone', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_opt_outs_company_id_companies'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('company_id', 'phone', name=op.f('pk_opt_outs')),
    )


def downgrade() -> None:
    op.drop_table('opt_outs')
    op.drop_index('ix_inbound_messages_company_received', table_name='inbound_messages')
    op.drop_table('inbound_messages')
    op.drop_index('ix_messages_sending', table_name='messages')
    op.drop_index('ix_messages_queued', table_name='messages')
    op.drop_index('ix_messages_gateway_id', table_name='messages')
    op.drop_index('ix_messages_booking', table_name='messages')
    op.drop_index('ix_messages_company_created', table_name='messages')
    op.drop_index('ix_messages_waiting_due', table_name='messages')
    op.drop_table('messages')
    op.drop_table('messaging_settings')
