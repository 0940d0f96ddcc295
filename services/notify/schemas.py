"""Notify's API bodies. Unknown fields are rejected (422); subscription secrets are write-only."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    Field,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from services.notify.routing import ROUTED_TYPES
from services.notify.targets import url_refusal
from shared.events import Channel
from shared.inputs import RequestBody

Recipient = Annotated[str, Field(min_length=5, max_length=200,
                                 pattern=r"^(org:[^\s\x00]+|vendor:[^\s\x00]+|team:(adjusters|operators))$",
                                 examples=["vendor:acme-dfir", "org:shenzhen-widget",
                                           "team:adjusters"])]


class SubscriptionIn(RequestBody):
    url: AnyHttpUrl = Field(
        description="http(s) endpoint that receives signed POSTs (https outside development); "
                    "its host must resolve to public addresses only")
    secret: Annotated[str, Field(min_length=16, max_length=500,
                                 description="HMAC key of the signatures; never returned")]
    event_types: list[str] | None = Field(
        default=None, description="only these notification types; all when absent")
    owner: Recipient | None = Field(
        default=None, description="operators only: whose endpoint this is (vendor:…, org:…, team:…)")

    @field_validator("url", mode="wrap")
    @classmethod
    def _plain_url(cls, value: object, parse: ValidatorFunctionWrapHandler) -> AnyHttpUrl:
        url: AnyHttpUrl = parse(value)
        if len(str(url)) > 2000:
            raise ValueError("url is longer than 2000 characters")
        refusal = url_refusal(url, str(value))
        if refusal is not None:
            raise ValueError(refusal)
        return url

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - ROUTED_TYPES)
        if unknown:
            raise ValueError(f"not a notification type: {', '.join(unknown)}")
        if not value:
            raise ValueError("name at least one type, or leave event_types out for all")
        return sorted(set(value))


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    owner: str
    url: str
    event_types: list[str] | None
    created_at: AwareDatetime


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    source_event_id: uuid.UUID
    event_type: str
    incident_id: uuid.UUID | None
    recipient: str
    channel: Channel
    target: str
    subscription_id: uuid.UUID | None
    kind: str
    state: str
    attempts: int
    next_attempt_at: AwareDatetime | None
    last_error: str | None
    created_at: AwareDatetime
    delivered_at: AwareDatetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    total: int
    limit: int
    offset: int


class NotificationOut(BaseModel):
    id: uuid.UUID
    recipient: str
    event_type: str
    kind: str
    incident_id: uuid.UUID | None
    title: str
    body: str
    created_at: AwareDatetime
    read_at: AwareDatetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    unread: int
    limit: int
    offset: int
