"""Notify's tables: subscriptions, a small copy of each incident and of each policy, deliveries
(the durable retry schedule), the in-app feed, regulatory reminders, outbox and inbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import Uuid

from shared.consumer import InboxColumns
from shared.db import NAMING_CONVENTION, UTCDateTime
from shared.outbox import OutboxColumns


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Outbox(OutboxColumns, Base):
    __tablename__ = "outbox"


class Inbox(InboxColumns, Base):
    __tablename__ = "inbox"


class Subscription(Base):
    """A webhook endpoint of one recipient (`org:…`, `vendor:…`, `team:…`). Deleting keeps the
    row (inactive) so past deliveries still name it; an owner has at most one active
    subscription per URL (a unique index over the active rows, so racing requests make one)."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_owner_active", "owner", "active"),
        Index("uq_subscriptions_owner_url_active", "owner", "url", unique=True,
              postgresql_where=text("active")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(500))
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IncidentCopy(Base):
    """What notify needs of an incident: whom to mail and what to call it, and whether the
    policyholder already confirmed its report to the regulator."""

    __tablename__ = "incidents"

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str | None] = mapped_column(String(300))
    policy_number: Mapped[str | None] = mapped_column(String(64))
    regulatory_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime)
    regulator_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PolicyContact(Base):
    """Whom to mail about a policy's risk (exposure alerts, remediation reminders): the
    policy's contact email, from the policy events (highest version wins)."""

    __tablename__ = "policies"

    policy_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    version: Mapped[int] = mapped_column(Integer)


class DeliveryState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"


class Delivery(Base):
    """One notification to one target over one channel: at most one per (source event,
    recipient, channel, target). Pending rows are the retry schedule (`next_attempt_at`)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("source_event_id", "recipient", "channel", "target",
                         name="uq_deliveries_event_recipient_channel_target"),
        Index("ix_deliveries_state_due", "state", "next_attempt_at"),
        Index("ix_deliveries_recipient_created", "recipient", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source_event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(200))
    incident_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    recipient: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(320))
    subscription_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    kind: Mapped[str] = mapped_column(String(80))
    correlation_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Notification(Base):
    """An item of a recipient's in-app feed."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("source_event_id", "recipient",
                         name="uq_notifications_source_event_id_recipient"),
        Index("ix_notifications_recipient_created", "recipient", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    recipient: Mapped[str] = mapped_column(String(200))
    source_event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(80))
    incident_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReminderState(StrEnum):
    pending = "pending"
    sent = "sent"
    cancelled = "cancelled"
    lapsed = "lapsed"


class Reminder(Base):
    """The regulatory deadline reminder of one incident; fired once, or cancelled by the
    policyholder's confirmation."""

    __tablename__ = "reminders"
    __table_args__ = (Index("ix_reminders_state_due", "state", "due_at"),)

    incident_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    org_id: Mapped[str] = mapped_column(String(128))
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))
    correlation_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
