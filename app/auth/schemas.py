"""Request and response bodies for API tokens. The clear token appears once, in the answer to
its creation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.models import ApiToken, TokenScope
from app.models.base import utcnow


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Who or what uses the token")
    scope: TokenScope = Field(
        default=TokenScope.WRITE,
        description="read: reads; write: also retry, cancel, sync; admin: also repositories, "
        "registries and tokens",
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="Default: the token does not expire"
    )


class TokenOut(BaseModel):
    id: int
    name: str
    scope: TokenScope
    prefix: str = Field(description="The token's first characters, to recognise it")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(
            id=token.id,
            name=token.name,
            scope=token.scope,
            prefix=token.prefix,
            created_at=token.created_at,
            expires_at=token.expires_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
            active=token.revoked_at is None and not token.expired(utcnow()),
        )


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token itself; it is not shown again")


class TokenList(BaseModel):
    items: list[TokenOut]
