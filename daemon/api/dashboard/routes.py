"""The dashboard's HTTP routes: the page, its assets, login, logout and login links.

- `GET /` the page shell (the same for everyone: it holds no data; the page asks the API);
- `GET /dashboard/assets/<file>` its CSS and JavaScript modules;
- `GET /login/<secret>` redeems a one-time link: sets the session cookie and sends the
  browser to `/#session=<page key>` (see `sessions`); a used, unknown or expired link gets a
  page saying so;
- `POST /logout` ends the session and clears the cookie;
- `POST /v1/dashboard/login-links` (bearer token only) mints a link: what `tierd open` calls.

Every page answer carries a strict Content-Security-Policy (own scripts and styles only, no
inline code, no framing, requests only to this origin) and asks the browser not to send a
Referer, so a login link never travels further than the daemon.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from daemon.api.dashboard.assets import Assets
from daemon.api.dashboard.sessions import LOGIN_LINKS_PATH, DashboardSessions
from daemon.service.errors import METHOD_NOT_FOUND

__all__ = ["PAGE_HEADERS", "LoginLink", "dashboard_router"]

#: Security headers of every dashboard answer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_NO_STORE = {**PAGE_HEADERS, "Cache-Control": "no-store"}


class LoginLink(BaseModel):
    """A one-time dashboard login link."""

    url: str = Field(description="open it in a browser: it works once, and expires")
    expires_in_s: float = Field(description="seconds until the link stops working")


def _asset_response(assets: Assets, name: str, request: Request, status: int = 200) -> Response:
    asset = assets.get(name)
    if asset is None:
        return JSONResponse(
            {
                "error": {
                    "code": METHOD_NOT_FOUND,
                    "message": "no such dashboard file",
                    "data": {"status": 404},
                }
            },
            status_code=404,
        )
    headers = {**PAGE_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
    if status == 200 and request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, status_code=status, media_type=asset.media_type, headers=headers)


def dashboard_router(sessions: DashboardSessions, assets: Assets | None = None) -> APIRouter:
    """The dashboard's routes, bound to `sessions` (the guard must be given the same one)."""
    files = assets or Assets()
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        return _asset_response(files, "index.html", request)

    @router.get("/dashboard/assets/{name:path}", include_in_schema=False)
    async def asset(name: str, request: Request) -> Response:
        return _asset_response(files, name, request)

    @router.get("/login/{secret}", include_in_schema=False)
    async def login(secret: Annotated[str, Path(max_length=200)], request: Request) -> Response:
        started = sessions.redeem(secret)
        if started is None:
            response = _asset_response(files, "login_failed.html", request, status=403)
            response.headers["Cache-Control"] = "no-store"
            return response
        # The page key goes in the fragment: the browser keeps it to itself (no server, no
        # Referer ever sees a fragment), and the page moves it into its own storage.
        response = RedirectResponse(f"/#session={started.csrf}", status_code=303, headers=_NO_STORE)
        response.set_cookie(
            sessions.cookie_name(request.scope),
            started.session_id,
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        ended = sessions.end(request.scope)
        response = JSONResponse({"logged_out": ended}, headers=_NO_STORE)
        response.delete_cookie(
            sessions.cookie_name(request.scope), path="/", httponly=True, samesite="strict"
        )
        return response

    @router.post(LOGIN_LINKS_PATH, tags=["dashboard"], summary="A one-time dashboard login link")
    async def login_link(request: Request) -> LoginLink:
        """A one-time link that signs a browser in to the dashboard (what `tierd open`
        prints). Bearer token only: a dashboard session cannot mint links."""
        secret = sessions.issue_link()
        host = request.headers.get("host", "")
        return LoginLink(url=f"http://{host}/login/{secret}", expires_in_s=sessions.link_ttl_s)

    return router
