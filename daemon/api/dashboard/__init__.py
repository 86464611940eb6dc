"""The human's desk: a web dashboard the daemon serves at `/`.

Vanilla HTML, CSS and JavaScript modules in `static/` (no build step, no CDN, nothing fetched
from the network), talking to the same API as every other client. `sessions` decides who may
use it (one-time login links, cookie sessions, CSRF), `routes` serves it, `assets` holds its
files. Wiring: include `dashboard_router(sessions)` in the FastAPI app and give the guard the
same `DashboardSessions`, which it asks about the dashboard's own paths (`open_path`), its own
Origin (`admits_origin`) and cookie requests (`authenticate`).
"""

from daemon.api.dashboard.assets import Assets
from daemon.api.dashboard.routes import LoginLink, dashboard_router
from daemon.api.dashboard.sessions import (
    CSRF_HEADER,
    LINK_TTL_S,
    LOGIN_LINKS_PATH,
    DashboardSessions,
)

__all__ = [
    "CSRF_HEADER",
    "LINK_TTL_S",
    "LOGIN_LINKS_PATH",
    "Assets",
    "DashboardSessions",
    "LoginLink",
    "dashboard_router",
]
