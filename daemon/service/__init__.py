"""The service: every action a client can take, whatever adapter it came through.

`service.Service` is the face the adapters call; `params` and `results` are the models of what
goes in and comes out; `errors` what can go wrong. The service sees the engine only through
the `ports.Engine` protocol.
"""
