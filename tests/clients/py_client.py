"""An MCP host on the official Python SDK (`mcp` 2.x), run by tests/it/sdk_clients.rs.

Usage: .venv/bin/python tests/clients/py_client.py CONFIG.json  (fields: tests/src/sdk_clients.rs)

Like ts-client.mjs: meets the 401 and lets the SDK discover, register (DCR or its CIMD client_id
URL) and authorize, with a headless "browser" (cookies, redirects, Allow on the consent page) and a
loopback redirect listener; calls tools; waits out the access token and calls again (this SDK
refreshes before expiry); then, holding a stored ops-console grant for `admin.read` only (a host
restarted with what it had), calls a tool needing `tickets.write` and lets the SDK step up.
Every HTTP exchange goes to the wire log; the last stdout line is a JSON summary.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
import sys
import time
import traceback
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

SECRET_KEYS = {
    "access_token", "refresh_token", "id_token", "code", "client_secret", "code_verifier", "token",
    "subject_token", "csrf", "request",
}
KEPT_HEADERS = [
    "www-authenticate", "mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name",
    "location", "content-type", "x-frame-options", "content-security-policy",
]


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def redact_url(raw: str) -> str:
    u = urlparse(raw)
    if not u.query:
        return raw
    q = [(k, digest(v) if k in SECRET_KEYS else v) for k, v in parse_qsl(u.query, keep_blank_values=True)]
    return u._replace(query=urlencode(q)).geturl()


def redact_json(v: Any) -> Any:
    if isinstance(v, list):
        return [redact_json(x) for x in v]
    if isinstance(v, dict):
        return {k: digest(x) if k in SECRET_KEYS and isinstance(x, str) else redact_json(x) for k, x in v.items()}
    return v


class Wire:
    """The wire log (same format as tests/clients/lib/wire.mjs)."""

    def __init__(self, path: str, who: str) -> None:
        self.path = path
        self.who = who

    def write(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def note(self, event: str, **detail: Any) -> None:
        self.write({"t": int(time.time() * 1000), "client": self.who, "event": event, **detail})

    def record(self, actor: str, request: httpx2.Request, response: httpx2.Response, body: Any) -> None:
        auth = request.headers.get("authorization")
        if auth:
            scheme, _, rest = auth.partition(" ")
            auth = f"Bearer {digest(rest)}" if scheme.lower() == "bearer" else f"{scheme} <redacted>"
        req_body: dict[str, Any] | None = None
        content = request.content if isinstance(request.stream, httpx2.ByteStream) else b""
        ctype = request.headers.get("content-type", "")
        if content and "x-www-form-urlencoded" in ctype:
            req_body = {"form": {k: digest(v) if k in SECRET_KEYS else v for k, v in parse_qsl(content.decode())}}
        elif content:
            try:
                j = json.loads(content)
                if isinstance(j, dict) and "jsonrpc" in j:
                    params = j.get("params") or {}
                    req_body = {"jsonrpc": {"method": j.get("method"), "name": params.get("name"), "id": j.get("id")}}
                else:
                    req_body = {"json": redact_json(j)}
            except ValueError:
                pass
        entry: dict[str, Any] = {
            "t": int(time.time() * 1000),
            "client": self.who,
            "actor": actor,
            "method": request.method,
            "url": redact_url(str(request.url)),
            "req": {
                "authorization": auth,
                "headers": {h: request.headers[h] for h in KEPT_HEADERS if h in request.headers},
                "body": req_body,
            },
            "status": response.status_code,
            "resp": {
                "headers": {
                    h: (redact_url(response.headers[h]) if h == "location" else response.headers[h])
                    for h in KEPT_HEADERS
                    if h in response.headers
                }
            },
        }
        if body is not None:
            entry["resp"]["json"] = redact_json(body)
        self.write(entry)


class WireTransport(httpx2.AsyncBaseTransport):
    """Logs every exchange that goes through it, including the SDK's OAuth requests."""

    def __init__(self, wire: Wire, actor: str) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.wire = wire
        self.actor = actor

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        body = None
        if "application/json" in response.headers.get("content-type", ""):
            content = await response.aread()
            await response.aclose()
            response = httpx2.Response(
                status_code=response.status_code,
                headers=[(k, v) for k, v in response.headers.items() if k.lower() != "content-encoding"],
                content=content,
                request=request,
            )
            try:
                body = json.loads(content)
            except ValueError:
                body = None
        self.wire.record(self.actor, request, response, body)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Loopback:
    """The loopback redirect URI: takes one authorization response at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.uri = f"http://127.0.0.1:{port}/callback"
        self.queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        target = line.split(" ")[1] if " " in line else "/"
        u = urlparse(target)
        if u.path == "/callback":
            await self.queue.put(dict(parse_qsl(u.query)))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\nconnection: close\r\n\r\n<p>done.</p>\n")
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    def close(self) -> None:
        self.server.close()


def verified_text(page: str) -> str | None:
    """The text that says whether the broker vouches for the client, tags removed."""
    m = re.search(r'id="client-verified">([\s\S]*?)</(?:p|span)>', page)
    return " ".join(html.unescape(re.sub(r"<[^>]*>", "", m[1])).split()) if m else None


def parse_consent(page: str) -> dict[str, Any] | None:
    form = re.search(r'<form method="post" action="([^"]+)">([\s\S]*?)</form>', page)
    if not form:
        return None
    hidden = {m[0]: html.unescape(m[1]) for m in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form[2])}

    def text(i: str) -> str | None:
        m = re.search(f'id="{i}">([^<]*)<', page)
        return html.unescape(m[1]) if m else None

    ul = re.search(r'<ul id="scopes">([\s\S]*?)</ul>', page)
    scopes = [html.unescape(s) for s in re.findall(r"<code>([^<]*)</code>", ul[1] if ul else "")]
    shows = {
        "client_name": text("client-name"),
        "claimed_name": text("client-claimed-name"),
        "verified": verified_text(page),
        "client_id": text("client-id"),
        "server": text("server"),
        "redirect_host": text("redirect-host"),
        "scopes": scopes,
    }
    return {"action": html.unescape(form[1]), "hidden": hidden, "shows": shows}


async def browse(url: str, redirect_uri: str, wire: Wire, consents: list[dict[str, Any]]) -> None:
    """Walks from the authorization URL to the loopback redirect, clicking Allow on consent pages."""
    async with httpx2.AsyncClient(transport=WireTransport(wire, "browser"), follow_redirects=False) as b:
        method, data = "GET", None
        for _ in range(25):
            r = await b.request(method, url, data=data)
            if url.startswith(redirect_uri):
                return
            loc = r.headers.get("location")
            if 300 <= r.status_code < 400 and loc:
                url, method, data = urljoin(url, loc), "GET", None
                continue
            consent = parse_consent(r.text) if r.status_code == 200 else None
            if consent is None:
                raise RuntimeError(f"browser: stuck at {r.status_code} {url}: {r.text[:300]}")
            consents.append({
                **consent["shows"],
                "framing": {
                    "x-frame-options": r.headers.get("x-frame-options"),
                    "content-security-policy": r.headers.get("content-security-policy"),
                },
            })
            url, method, data = urljoin(url, consent["action"]), "POST", {**consent["hidden"], "decision": "approve"}
        raise RuntimeError("browser: more than 25 hops")


class MemoryStorage:
    def __init__(self, wire: Wire, name: str) -> None:
        self.wire = wire
        self.name = name
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.wire.note("tokens_saved", server=self.name, scope=tokens.scope)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info
        self.wire.note("client_information", server=self.name, client_id=client_info.client_id)


class Host:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.wire = Wire(cfg["wire_log"], cfg["label"])
        self.loopback = Loopback(cfg["redirect_port"])
        self.consents: list[dict[str, Any]] = []

    def metadata(self) -> OAuthClientMetadata:
        return OAuthClientMetadata(
            client_name=self.cfg["client_name"],
            redirect_uris=[self.loopback.uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
            application_type="native",
        )

    async def redirect_handler(self, url: str) -> None:
        scope = dict(parse_qsl(urlparse(url).query)).get("scope")
        self.wire.note("open_browser", scope=scope)
        await browse(url, self.loopback.uri, self.wire, self.consents)

    async def callback_handler(self) -> AuthorizationCodeResult:
        p = await self.loopback.queue.get()
        if "error" in p:
            raise RuntimeError(f"authorization refused: {p['error']}: {p.get('error_description')}")
        return AuthorizationCodeResult(code=p["code"], state=p.get("state"), iss=p.get("iss"))

    def provider(self, url: str, storage: MemoryStorage) -> OAuthClientProvider:
        cimd = self.cfg["client_metadata_url"] if self.cfg["registration"] == "cimd" else None
        return OAuthClientProvider(
            server_url=url,
            client_metadata=self.metadata(),
            storage=storage,
            redirect_handler=self.redirect_handler,
            callback_handler=self.callback_handler,
            client_metadata_url=cimd,
        )

    def client(self, url: str, auth: OAuthClientProvider) -> Client:
        http = httpx2.AsyncClient(auth=auth, transport=WireTransport(self.wire, "sdk"), timeout=60)
        mode = "2026-07-28" if self.cfg["protocol"] == "2026-07-28" else "legacy"
        return Client(streamable_http_client(url, http_client=http), mode=mode)

    async def least_privilege_grant(self, url: str, scope: str) -> MemoryStorage:
        """What a host restarted with a stored narrow grant holds: a registration and a token for
        `scope`, obtained here by hand (the SDK offers no way to ask for less than the 401 names)."""
        storage = MemoryStorage(self.wire, "ops-console")
        async with httpx2.AsyncClient(transport=WireTransport(self.wire, "host"), follow_redirects=False) as h:
            probe = await h.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
                                 headers={"accept": "application/json, text/event-stream"})
            prm_url = re.search(r'resource_metadata="([^"]+)"', probe.headers["www-authenticate"])[1]
            prm = (await h.get(prm_url)).json()
            issuer = prm["authorization_servers"][0]
            base = urlparse(issuer)
            asm = None
            for wk in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
                r = await h.get(f"{base.scheme}://{base.netloc}{wk}{base.path.rstrip('/')}")
                if r.status_code == 200:
                    asm = r.json()
                    break
            assert asm is not None, "no authorization server metadata"
            if self.cfg["registration"] == "cimd":
                info = OAuthClientInformationFull(
                    client_id=self.cfg["client_metadata_url"], redirect_uris=[self.loopback.uri],
                    token_endpoint_auth_method="none")
            else:
                # Registered once, not tied to a scope; authorized for less.
                meta = self.metadata().model_dump(mode="json", exclude_none=True)
                reg = await h.post(asm["registration_endpoint"], json=meta)
                reg.raise_for_status()
                info = OAuthClientInformationFull.model_validate(reg.json())
            await storage.set_client_info(info)
            verifier = secrets.token_urlsafe(48)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            state = secrets.token_urlsafe(16)
            q = urlencode({
                "response_type": "code", "client_id": info.client_id, "redirect_uri": self.loopback.uri,
                "scope": scope, "resource": prm["resource"], "state": state,
                "code_challenge": challenge, "code_challenge_method": "S256",
            })
            await self.redirect_handler(f"{asm['authorization_endpoint']}?{q}")
            cb = await self.callback_handler()
            assert cb.state == state and cb.iss == asm["issuer"], "state or iss mismatch"
            t = await h.post(asm["token_endpoint"], data={
                "grant_type": "authorization_code", "code": cb.code, "redirect_uri": self.loopback.uri,
                "code_verifier": verifier, "client_id": info.client_id, "resource": prm["resource"]})
            t.raise_for_status()
            await storage.set_tokens(OAuthToken.model_validate(t.json()))
        return storage


def result_of(r: Any) -> dict[str, Any]:
    # The tools echo the credential that reached them: keep only whether they answered.
    content = getattr(r, "content", None) or []
    text = getattr(content[0], "text", None) if content else None
    failed = bool(getattr(r, "is_error", False) or getattr(r, "isError", False))
    return {"ok": not failed and isinstance(text, str)}


async def main(cfg: dict[str, Any]) -> dict[str, Any]:
    host = Host(cfg)
    summary: dict[str, Any] = {"label": cfg["label"], "sdk": "python", "protocol": cfg["protocol"], "steps": {}}
    await host.loopback.start()
    try:
        support_store = MemoryStorage(host.wire, "support-assistant")
        async with host.client(cfg["support_url"], host.provider(cfg["support_url"], support_store)) as c:
            summary["protocol_negotiated"] = c.protocol_version
            tools = await c.list_tools()
            summary["client_id"] = support_store.client.client_id if support_store.client else None
            summary["steps"]["tools"] = sorted(t.name for t in tools.tools)
            summary["steps"]["list_tickets"] = result_of(await c.call_tool("list_tickets", {}))
            summary["steps"]["consents"] = list(host.consents)
            host.wire.note("expiry_wait", seconds=cfg["expiry_wait_s"])
            await asyncio.sleep(cfg["expiry_wait_s"])
            summary["steps"]["after_expiry"] = result_of(await c.call_tool("get_account", {"account_id": "acme"}))

        ops_store = await host.least_privilege_grant(cfg["ops_url"], "admin.read")
        summary["steps"]["ops_initial_scope"] = ops_store.tokens.scope if ops_store.tokens else None
        async with host.client(cfg["ops_url"], host.provider(cfg["ops_url"], ops_store)) as c:
            summary["steps"]["admin_report"] = result_of(await c.call_tool("admin_report", {}))
            try:
                summary["steps"]["update_ticket"] = result_of(
                    await c.call_tool("update_ticket", {"ticket_id": "T-1", "status": "closed"}))
            except Exception as e:  # noqa: BLE001 - the summary reports what the SDK did
                summary["steps"]["update_ticket"] = {"ok": False, "error": repr(e)}
        summary["steps"]["ops_final_scope"] = ops_store.tokens.scope if ops_store.tokens else None
        summary["ops_client_id"] = ops_store.client.client_id if ops_store.client else None
        summary["ok"] = True
    except BaseException as e:  # noqa: BLE001
        summary["ok"] = False
        summary["error"] = "".join(traceback.format_exception(e))
    finally:
        host.loopback.close()
    return summary


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    print(json.dumps(asyncio.run(main(config))), flush=True)
