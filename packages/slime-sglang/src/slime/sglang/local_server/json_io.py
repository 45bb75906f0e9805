"""JSON request bodies and SGLang's error answer shape, shared by the local server's route modules."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body, `{}` for an empty body; anything else raises HTTP 400."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad_request(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad_request("body must be a JSON object")
    return body


def error_response(status: int, message: str) -> web.Response:
    """SGLang's error shape: `{"error": {"message", "type", "code"}}`."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


def _bad_request(message: str) -> web.HTTPBadRequest:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": 400}})
    return web.HTTPBadRequest(text=body, content_type="application/json")
