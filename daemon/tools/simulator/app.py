"""The HTTP app: the OpenAI-compatible routes, the `/_sim/*` control routes, and the way of one
call from request to answer (its identity, latency, tokens, failure and log entry).

Everything random (latencies, token counts, failure rates) is drawn from an RNG seeded by the
scenario seed and the call's identity (task, stream, purpose, round, model, repeat number), not
from a shared stream: concurrent runs get the same numbers whatever order calls arrive in.

Prompt tokens are the prompt's own size (four characters a token, plus its images and
documents) unless a scenario sets `prompt_tokens`; completion tokens are drawn from the
scenario's amounts. Every answer reports its cached prompt tokens as OpenAI does
(`usage.prompt_tokens_details.cached_tokens`, see `prompt_cache`).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from daemon.tools.simulator.answers import Answerer
from daemon.tools.simulator.calls import (
    CLIENT_CLOSED,
    CallInfo,
    CallRecord,
    SimState,
    read_call,
    watched_in,
)
from daemon.tools.simulator.code import code_answer, spoil_code
from daemon.tools.simulator.faults import ANSWER_REPLACING, choose_failure, fail, spoil
from daemon.tools.simulator.prompt_cache import cacheable_tokens
from daemon.tools.simulator.replies import Answer, error_response, send
from daemon.tools.simulator.scenario import Amount, Scenario, draw, load_scenario

if TYPE_CHECKING:
    import uvicorn

__all__ = ["Simulator", "create_sim_app"]

#: The models `GET /v1/models` lists (beside the scenario's failing ones).
MODELS = ("gpt-5", "gpt-5-mini", "sim-premium", "sim-cheap")


class Simulator:
    """The request handling behind `create_sim_app`."""

    def __init__(self, scenario: Scenario, scale: float | None = None) -> None:
        # A startup scale multiplies the scenario's own, so `--scale 0.1` shrinks any file.
        self.state = SimState(scenario, scenario.scale * (1.0 if scale is None else scale))
        self.answerer = Answerer(self.state)
        #: The uvicorn server serving this app (set by `server.py`), for kind "reset".
        self.server: uvicorn.Server | None = None

    def _rng(self, call: CallInfo, what: str, repeat: int) -> random.Random:
        # str seeds hash deterministically (sha512), unlike hash() of a tuple.
        return random.Random(
            f"{self.state.scenario.seed}|{what}|{call.task_id}|"
            f"{call.stream_id}|{call.purpose}|{call.round}|{call.model}|{repeat}"
        )

    def _latency(self, call: CallInfo, rng: random.Random) -> float:
        sc = self.state.scenario
        behaviour = sc.streams.get(call.stream_id or "")
        amount: Amount | None = None
        if call.purpose == "execute" and behaviour and behaviour.latency is not None:
            amount = behaviour.latency
        elif call.purpose in sc.purpose_latency:
            amount = sc.purpose_latency[call.purpose]
        else:
            amount = sc.latency.get(call.role)
        return draw(amount, rng) * self.state.scale if amount is not None else 0.0

    def _tokens(self, call: CallInfo, content: str, rng: random.Random) -> tuple[int, int]:
        """Prompt and completion tokens: the prompt's text (or the scenario's figure) plus
        its images and documents (`calls.media`), as a provider counts them in one sum."""
        sc = self.state.scenario
        prompt = (
            round(draw(sc.prompt_tokens, rng))
            if sc.prompt_tokens is not None
            else math.ceil(len(call.prompt) / 4)
        ) + call.media_tokens
        behaviour = sc.streams.get(call.stream_id or "")
        amount = (
            behaviour.completion_tokens
            if call.purpose == "execute" and behaviour and behaviour.completion_tokens is not None
            else sc.completion_tokens.get(call.role)
        )
        completion = round(draw(amount, rng)) if amount is not None else math.ceil(len(content) / 4)
        return max(1, prompt), max(1, completion)

    def _cached(self, call: CallInfo, prompt_tokens: int) -> int:
        """The call's cached prompt tokens (`prompt_cache`), never more than its prompt
        tokens (a scenario may draw fewer than the text holds: then a step below them)."""
        cached = self.state.prompt_cache.take(call.model, call.preamble, call.prompt)
        return cached if cached <= prompt_tokens else cacheable_tokens(prompt_tokens)

    async def chat(self, request: Request) -> Response:
        """`POST /v1/chat/completions`."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return error_response(400, "'messages' must be a list", "invalid_request_error")
        call = read_call(request, body)
        key = (call.task_id, call.stream_id, call.purpose, call.round, call.model)
        repeat = self.state.repeats[key]
        self.state.repeats[key] += 1
        rng = self._rng(call, "call", repeat)
        rec = self.state.record(call)
        rec.watched = watched_in(raw.decode(errors="replace"), body, self.state.scenario.watch)
        try:
            return await self._respond(request, call, rec, rng)
        except asyncio.CancelledError:
            # The server is shutting down (or cancelled the handler): the client got nothing.
            if rec.status is None:
                rec.finish(CLIENT_CLOSED, disconnected=True)
            raise

    async def _respond(
        self, request: Request, call: CallInfo, rec: CallRecord, rng: random.Random
    ) -> Response:
        latency = self._latency(call, rng)
        failure = choose_failure(self.state, call, rng)
        rec.latency_s = latency
        rec.injected = failure.kind if failure else None
        if failure is not None and failure.kind in ANSWER_REPLACING:
            return await fail(request, call, rec, failure, latency, self.server)
        tool_calls: list[dict[str, Any]] = []
        if call.tools is not None:
            scripted = spoil_code(code_answer(self.state.scenario, call), failure)
            content, tool_calls, size = scripted.text, scripted.tool_calls, scripted.size()
            rec.tool_calls = scripted.names
        else:
            content = size = spoil(self.answerer.answer(call), failure, call.purpose)
        prompt_tokens, completion_tokens = self._tokens(call, size, rng)
        cached = self._cached(call, prompt_tokens)
        rec.prompt_tokens, rec.completion_tokens = prompt_tokens, completion_tokens
        rec.cached_tokens = cached
        # Any: the details are a nested object, as in OpenAI's usage (replies sends it as is).
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            # As OpenAI reports them: the cached part is included in prompt_tokens.
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        answer = Answer(
            call=call,
            rec=rec,
            content=content,
            usage=usage,
            ident=f"chatcmpl-sim-{uuid.uuid4().hex[:20]}",
            latency=latency,
            truncated=failure is not None and failure.kind == "truncated",
            tool_calls=tool_calls,
        )
        return await send(request, answer)

    def models(self) -> dict[str, Any]:
        """`GET /v1/models`."""
        names = list(MODELS)
        names += [m for m in self.state.scenario.fail_models if m not in names]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "tierd-sim"} for n in names
            ],
        }

    async def swap_scenario(self, request: Request) -> Response:
        """`POST /_sim/scenario`: swap the scenario (body: a scenario, optional "scale"
        multiplying its own); clears the stats."""
        try:
            body = await request.json()
            new_scale = body.pop("scale", None) if isinstance(body, dict) else None
            scenario = Scenario.model_validate(body.get("scenario", body))
        except ValueError as exc:
            return error_response(400, f"invalid scenario: {exc}", "invalid_request_error")
        self.state.scenario = scenario
        self.state.scale = scenario.scale * (1.0 if new_scale is None else float(new_scale))
        self.state.reset()
        return JSONResponse({"ok": True, "name": scenario.name, "scale": self.state.scale})


def create_sim_app(
    scenario: Scenario | dict[str, Any] | str | Path | None = None, *, scale: float | None = None
) -> FastAPI:
    """The simulator as an ASGI app. `scale` multiplies the scenario's latency scale."""
    sim = Simulator(load_scenario(scenario), scale)
    app = FastAPI(title="tierd model simulator", docs_url=None, redoc_url=None)
    app.state.sim = sim

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await sim.chat(request)

    @app.get("/v1/models")
    @app.get("/models")
    async def models() -> dict[str, Any]:
        return sim.models()

    @app.get("/_sim/stats")
    async def stats() -> dict[str, Any]:
        return sim.state.stats()

    @app.post("/_sim/reset")
    async def reset() -> dict[str, Any]:
        sim.state.reset()
        return {"ok": True}

    @app.get("/_sim/scenario")
    async def get_scenario() -> dict[str, Any]:
        return {"scale": sim.state.scale, "scenario": sim.state.scenario.model_dump(mode="json")}

    @app.post("/_sim/scenario")
    async def set_scenario(request: Request) -> Response:
        return await sim.swap_scenario(request)

    return app
