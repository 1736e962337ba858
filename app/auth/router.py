"""HTTP endpoints for API tokens: create (the clear token is in that answer only), list, revoke.
Every one needs a token with the admin scope."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import AdminToken, DbSession
from app.auth import service
from app.auth.schemas import TokenCreate, TokenCreated, TokenList, TokenOut
from app.models.base import utcnow

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.get("")
def list_tokens(
    session: DbSession,
    _token: AdminToken,
    include_revoked: Annotated[bool, Query(description="also revoked tokens")] = False,
) -> TokenList:
    """Tokens, newest first (never the tokens themselves: only their first characters)."""
    tokens = service.list_tokens(session, include_revoked=include_revoked)
    return TokenList(items=[TokenOut.of(token) for token in tokens])


@router.post("", status_code=201)
def create_token(body: TokenCreate, session: DbSession, _token: AdminToken) -> TokenCreated:
    expires_at = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    token, raw = service.create_token(session, body.name, body.scope, expires_at=expires_at)
    return TokenCreated(**TokenOut.of(token).model_dump(), token=raw)


@router.get("/{token_id}")
def get_token(token_id: int, session: DbSession, _token: AdminToken) -> TokenOut:
    return TokenOut.of(service.get_token(session, token_id))


@router.delete("/{token_id}")
def revoke_token(token_id: int, session: DbSession, _token: AdminToken) -> TokenOut:
    """Revokes the token: the next request that presents it gets 401. Revoking a revoked
    token changes nothing."""
    return TokenOut.of(service.revoke_token(session, token_id))
