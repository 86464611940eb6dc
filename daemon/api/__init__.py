"""The adapters: how clients reach the service over HTTP.

`app` builds the ASGI application (`guard` around `rpc_http` around `json_body` around
FastAPI); `rest`, `events` (Server-Sent Events) and `rpc` translate requests into service
calls and results into JSON, `detail_cache` keeps the answers that only read the store until
it next writes; `openapi` and `openrpc` describe them; `composition` builds the daemon's
parts, `server` runs them (`tierd serve`) and `connections` (with `httptools_bounded`) bounds
the connections under them (deadlines on half-sent requests and stalled readers, a cap on how
many are open).
"""
