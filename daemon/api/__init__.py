"""The adapters: how clients reach the service over HTTP.

`app` builds the ASGI application (`guard` around `json_body` around FastAPI); `rest` and `rpc`
translate requests into service calls and results into JSON; `openapi` and `openrpc` describe
them; `composition` builds the daemon's parts and `server` runs them (`tierd serve`).
"""
