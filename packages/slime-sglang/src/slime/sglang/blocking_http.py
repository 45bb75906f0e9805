"""Blocking JSON-over-HTTP calls for lifecycle code (health probes, router registration), standard library only.

Lifecycle code runs outside any event loop (launching processes, `atexit`), so it cannot use the async client.
Proxies from the environment are ignored: these calls go to engines and routers we started or were given.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from slime.types import EngineError

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request_json(method: str, url: str, body: Any = None, *, timeout_s: float = 10.0) -> tuple[int, Any]:
    """Send `body` as JSON and return `(status, parsed body)`; a non-JSON body comes back as a string.

    HTTP error statuses are returned, not raised.

    Raises:
        EngineError: the server could not be reached or did not answer within `timeout_s`.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise EngineError(f"{method} {url}: cannot reach the server ({exc})") from exc
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return status, text


def is_ok(url: str, *, timeout_s: float = 5.0) -> bool:
    """True when GET `url` answers 200."""
    try:
        return request_json("GET", url, timeout_s=timeout_s)[0] == 200
    except EngineError:
        return False
