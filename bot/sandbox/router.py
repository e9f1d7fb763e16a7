"""The sandbox's REST router under ``/api/v10``: Discord-style 401/404/405 answers, rate-limit
headers, :class:`ApiError` answers recorded as violations, and the request record tests assert on
(``sandbox.requests``: every request a bot made, with its route template and API path)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .limits import ApiError
from .state import BotUser

if TYPE_CHECKING:
    from .server import DiscordSandbox


@dataclass
class Call:
    request: web.Request
    params: dict[str, str]
    bot: BotUser | None
    route: str

    def id(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise ApiError(
                400,
                50035,
                "Invalid Form Body",
                errors={
                    name: {
                        "_errors": [{"code": "NUMBER_TYPE_COERCE", "message": f'Value "{self.params[name]}" is not snowflake.'}]
                    }
                },
            ) from None

    @property
    def me(self) -> BotUser:
        assert self.bot is not None
        return self.bot


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class RequestRecord:
    """One REST request as the sandbox answered it. ``route`` is the template
    (``/webhooks/{app_id}/{token}/messages/{message_id}``), ``path`` the concrete API path without the
    ``/api/v10`` prefix (``/webhooks/1/tok/messages/@original``), ``query`` its query string."""

    method: str
    route: str
    path: str
    status: int
    bot_id: int | None
    query: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def endpoint(self) -> str:
        """``"PATCH /webhooks/{app_id}/{token}/messages/@original"``-style: the template with the literal
        ``@original``/``@me`` segments the path used, for asserting which endpoint was called."""
        parts = [p if p.startswith("@") else t for t, p in zip(self.route.split("/"), self.path.split("/"), strict=False)]
        return f"{self.method} {'/'.join(parts)}"

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


class Router:
    def __init__(self, sandbox: DiscordSandbox) -> None:
        self.sandbox = sandbox
        self.routes: list[tuple[str, re.Pattern[str], str, Handler, bool]] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append((method, re.compile(pattern), template, handler, auth))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        allowed = False
        for method, regex, template, handler, auth in self.routes:
            match = regex.fullmatch(path)
            if match is None:
                continue
            allowed = True
            if method == request.method:
                return await self.run(request, path, match.groupdict(), template, handler, auth)
        status, text = (405, "405: Method Not Allowed") if allowed else (404, "404: Not Found")
        self.sandbox.unknown_routes.append(f"{request.method} {path}")
        self.sandbox.record_violation("unknown_route", f"{request.method} {path} -> {status}")
        self.log(request, path, path, status, None)
        return self.json({"message": text, "code": 0}, status, path)

    async def run(
        self, request: web.Request, path: str, params: dict[str, str], template: str, handler: Handler, auth: bool
    ) -> web.StreamResponse:
        route = f"{request.method} {template}"
        bot = self.sandbox.bot_by_authorization(request.headers.get("Authorization", ""))
        if auth and bot is None:
            self.sandbox.record_violation("unauthorized", f"{route} without a valid bot token", route)
            self.log(request, template, path, 401, None)
            return self.json({"message": "401: Unauthorized", "code": 0}, 401, template)
        try:
            result = await handler(Call(request, params, bot, route))
        except ApiError as exc:
            self.sandbox.record_violation(exc.kind, exc.detail, route)
            self.log(request, template, path, exc.status, bot)
            return self.json(exc.body(), exc.status, template)
        if isinstance(result, web.StreamResponse):
            self.log(request, template, path, result.status, bot)
            return result
        status = 204 if result is None else 200
        self.log(request, template, path, status, bot)
        if result is None:
            return web.Response(status=204, headers=self.headers(template))
        return self.json(result, 200, template)

    def log(self, request: web.Request, route: str, path: str, status: int, bot: BotUser | None) -> None:
        record = RequestRecord(request.method, route, path, status, bot.id if bot else None, request.query_string)
        self.sandbox.requests.append(record)

    @staticmethod
    def headers(template: str) -> dict[str, str]:
        bucket = hashlib.sha1(template.encode()).hexdigest()[:32]
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    def json(self, body: Any, status: int, template: str) -> web.Response:
        # Exactly "application/json", as Discord sends it: discord.py compares the header verbatim.
        headers = {**self.headers(template), "Content-Type": "application/json"}
        return web.Response(body=json.dumps(body).encode(), status=status, headers=headers)
