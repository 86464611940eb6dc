"""The model tiers: every model call in tierd goes through this package.

- `tier`: a role's model, where it is served, its fallbacks and limits (`ModelTier`);
- `client`: litellm, set up for a local daemon (no price-map fetch, no telemetry);
- `environment`: provider settings from the environment, kept for their own server only;
- `routing`: which provider serves a model; a tier checked before any call;
- `transport`: one answer from a tier: the litellm call with its deadline, retries and
  fallbacks;
- `structured`: JSON answers: finding, parsing and asking for them;
- `toolcalls`: tool calls in an answer (`ToolCall`) and the messages that carry them back;
- `usage`: the record of one attempt (`UsageRecord`); `costs`: what tokens cost;
- `errors`: one base (`ModelError`) for a tier set up wrongly, a call nobody answered and an
  answer that never parsed;
- `gateway`: `call_model`, the one function that puts these together.
"""
