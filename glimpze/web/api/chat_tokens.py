"""`POST /v1/widget-tokens`: a site's backend mints a short-lived token for one visitor's browser."""

from __future__ import annotations

from litestar import post

from glimpze.chat.tokens import ChatToken, TokenRequest
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json

TOKEN_REQUEST: Decoder[TokenRequest] = Decoder(TokenRequest)


@post(
    "/widget-tokens",
    opt={"body": TokenRequest},
    tags=["widget"],
    summary="Mint a widget token (default 10 min, at most 1 h) bound to a visitor and optionally an origin and agent",
)
async def mint_chat_token(request: AnyRequest, glimpze: App, principal: Caller) -> ChatToken:
    data = await read_json(request, TOKEN_REQUEST)
    return await glimpze.chat_tokens.mint(principal.project_id, data)
