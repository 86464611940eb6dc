"""The service layer: every action a client can take, independent of how it arrived.

JSON-RPC, REST and any later adapter call these methods and only translate. The service
validates, persists and hands work to the runner; it never waits for a task's work.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from daemon import __version__
from daemon.config.layers import (
    Config,
    ConfigError,
    Layer,
    check_value,
    check_values,
    project_layer,
    set_user_value,
)
from daemon.home.paths import Homes
from daemon.service.admission import ActiveTasks, KeyLocks
from daemon.service.diagnostics import process_snapshot
from daemon.service.errors import Busy, InvalidParams, InvalidState, NotConfigured, TaskNotFound
from daemon.service.params import (
    AnswerParams,
    ApproveParams,
    ConfigGetParams,
    ConfigSetParams,
    ListParams,
    SubmitParams,
    TaskIdParams,
)
from daemon.store.states import TERMINAL, TaskState
from daemon.store.store import Store, TaskRow, redact_url

ROLES = ("orchestrator", "planner", "executor")
T = TypeVar("T")
#: Seconds a client refused a new task is told to wait: tasks take seconds to minutes, so
#: retrying sooner would only add load.
SUBMIT_RETRY_AFTER_S = 5.0


class Engine(Protocol):
    """What the service needs from the runner."""

    def start(self, task_id: str) -> None: ...
    async def cancel(self, task_id: str) -> None: ...
    def wake(self, task_id: str) -> None: ...
    def concurrency(self) -> dict[str, Any]: ...
    def set_ceiling(self, ceiling: int) -> None: ...


def new_task_id() -> str:
    # Time-ordered ids: listing by id is listing by submission, and ids make stable cursors.
    return f"t{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@dataclass
class Service:
    store: Store
    homes: Homes
    config: Config
    engine: Engine
    env: dict[str, str] = field(default_factory=lambda: os.environ)  # type: ignore[assignment]
    started_at: float = field(default_factory=time.time)
    _background: set[asyncio.Future[Any]] = field(default_factory=set, repr=False)
    _active: ActiveTasks = field(init=False, repr=False)
    _admitting: int = field(default=0, init=False, repr=False)
    _key_locks: KeyLocks = field(default_factory=KeyLocks, init=False, repr=False)

    def __post_init__(self) -> None:
        self._active = ActiveTasks(self.store)

    async def _admit(self) -> None:
        """Refuse a task when limits.max_active_tasks are already unfinished."""
        limit = int(self.config.get("limits.max_active_tasks"))
        # Submits between this check and their task.state event count too, or a burst of
        # concurrent submits would all pass it.
        active = await self._active.count() + self._admitting
        if active >= limit:
            raise Busy(
                f"too many unfinished tasks ({limit}, limits.max_active_tasks); "
                "retry when some have finished",
                retry_after_s=SUBMIT_RETRY_AFTER_S,
                data={"limit": limit},
            )

    # --- tasks -----------------------------------------------------------------------------

    def effective_config(self, params: SubmitParams) -> Config:
        """The configuration a task runs with: all layers, the task's own options last."""
        config = self.config
        opts = params.options
        if opts.project_dir:
            if not os.path.isdir(opts.project_dir):
                raise InvalidParams(
                    f"options.project_dir: no such directory: {opts.project_dir}",
                    {"field": "options.project_dir"},
                )
            try:
                layer = project_layer(opts.project_dir, config.defaults)
            except ConfigError as exc:
                raise InvalidParams(
                    f"options.project_dir: {exc}", {"field": "options.project_dir", "key": exc.key}
                ) from exc
            if layer:
                config = config.with_layer(layer)
        overrides: dict[str, Any] = {}
        mapping = {
            "approval": "review.approval",
            "parallelize": "rules.parallelize",
            "coupled": "rules.coupled",
            "instructions": "rules.instructions",
            "max_streams": "plan.max_streams",
        }
        for name, key in mapping.items():
            value = getattr(opts, name)
            if value is not None:
                overrides[key] = value
        if overrides:
            try:
                values = check_values(overrides, config.defaults)
            except ConfigError as exc:
                name = next((n for n, k in mapping.items() if k == exc.key), "options")
                raise InvalidParams(
                    f"options.{name}: {exc}", {"field": f"options.{name}", "key": exc.key}
                ) from exc
            config = config.with_layer(Layer("task", None, values))
        return config

    def check_models(self, config: Config) -> None:
        """Refuse a task that could never run: a role with no model or a missing key."""
        for role in ROLES:
            model = config.get(f"models.{role}.model")
            if not model:
                raise NotConfigured(
                    f"no model configured for the {role}: set models.{role}.model "
                    f"(e.g. `tierd config set models.{role}.model gpt-5`)",
                    {"key": f"models.{role}.model"},
                )
            key_env = config.get(f"models.{role}.api_key_env")
            if key_env and not self.env.get(key_env):
                raise NotConfigured(
                    f"the {role}'s model {model!r} needs an API key: set the environment "
                    f"variable {key_env} for the daemon, or change models.{role}.api_key_env "
                    f'("" for a local server that needs no key)',
                    {"key": f"models.{role}.api_key_env", "env": key_env},
                )

    async def submit(self, params: SubmitParams) -> dict[str, Any]:
        limits = self.config
        if len(params.goal) > limits.get("limits.max_goal_chars"):
            raise InvalidParams(
                f"goal: too long ({len(params.goal)} characters, at most "
                f"{limits.get('limits.max_goal_chars')})",
                {"field": "goal"},
            )
        if len(params.context) > limits.get("limits.max_context_chars"):
            raise InvalidParams(
                f"context: too long ({len(params.context)} characters, at most "
                f"{limits.get('limits.max_context_chars')})",
                {"field": "context"},
            )
        if not params.goal.strip():
            raise InvalidParams("goal: must not be blank", {"field": "goal"})
        key = params.idempotency_key
        if key is None:
            return await self._submit_new(params)
        # One submit per key at a time in this daemon: a concurrent retry waits for the first
        # and then finds its task, instead of racing it through admission.
        async with self._key_locks.hold(key):
            existing = await self.store.task_by_key(key)
            if existing is not None:
                # Before admission: a retry of a task already counted is not a new task.
                return self._duplicate(existing, params)
            return await self._submit_new(params)

    async def _submit_new(self, params: SubmitParams) -> dict[str, Any]:
        await self._admit()
        config = self.effective_config(params)
        self.check_models(config)
        self._admitting += 1
        creating = asyncio.ensure_future(self._create(params, config))
        # Counted until the creation itself ends, not the request: a client that goes away
        # leaves the creation running, and it must still count against the limit.
        creating.add_done_callback(self._admitted)
        # Detached: a client that goes away mid-submit must not leave its task stored but
        # never started (its retry would find the task and start nothing).
        return await self._detached(creating)

    def _admitted(self, _creation: asyncio.Future[Any]) -> None:
        self._admitting -= 1

    @staticmethod
    def _duplicate(row: TaskRow, params: SubmitParams) -> dict[str, Any]:
        """The answer to a submit whose idempotency key already names `row`."""
        same = (
            row.goal == params.goal
            and row.context == params.context
            and row.options_json == params.options.model_dump_json(exclude_none=True)
        )
        if not same:
            raise InvalidParams(
                f"idempotency_key: already used for another request (task {row.id}, with a "
                "different goal, context or options); use a new key for a new task",
                {"field": "idempotency_key", "task_id": row.id},
            )
        return {"task_id": row.id, "state": row.state, "duplicate": True}

    async def _create(self, params: SubmitParams, config: Config) -> dict[str, Any]:
        now = time.time()
        settings = {
            k: v
            for k, v in config.values.items()
            if k.split(".")[0] in {"models", "plan", "review", "rules", "notify"}
        }
        row = TaskRow(
            id=new_task_id(),
            state=TaskState.queued,
            goal=params.goal,
            context=params.context,
            options_json=params.options.model_dump_json(exclude_none=True),
            created_at=now,
            updated_at=now,
            settings_json=json.dumps(settings),
            idempotency_key=params.idempotency_key,
        )
        if row.idempotency_key is None:
            await self.store.create_task(row)
        else:
            stored, created = await self.store.create_task_once(row)
            if not created:  # another process sharing the database took the key first
                return self._duplicate(stored, params)
        self.engine.start(row.id)
        return {"task_id": row.id, "state": row.state}

    async def _row(self, task_id: str) -> TaskRow:
        row = await self.store.get_task(task_id)
        if row is None:
            raise TaskNotFound(f"no task with id {task_id!r}", {"task_id": task_id})
        return row

    async def task_view(self, row: TaskRow, *, full: bool = True) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": row.id,
            "state": row.state,
            "goal": row.goal,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "error": row.error,
        }
        if not full:
            return view
        streams = await self.store.streams_of(row.id)
        questions = await self.store.questions_of(row.id)
        view.update(
            {
                "context": row.context,
                "options": _loads(row.options_json) or {},
                "plan": _loads(row.plan_json),
                "streams": [
                    {
                        "id": s.stream_id,
                        "parent": s.parent_id,
                        "title": s.title,
                        "state": s.state,
                        "depends_on": (_loads(s.spec_json) or {}).get("depends_on", []),
                        "output": s.output,
                        "verdict": s.verdict,
                        "reason": s.reason,
                        "rounds": s.rounds,
                        "depth": s.depth,
                        "started_at": s.started_at,
                        "ended_at": s.ended_at,
                    }
                    for s in streams
                ],
                "questions": [
                    {
                        "id": q.id,
                        "stream_id": q.stream_id,
                        "question": q.question,
                        "answer": q.answer,
                    }
                    for q in questions
                ],
                "result": row.result,
                "report": _loads(row.report_json),
            }
        )
        return view

    async def get(self, params: TaskIdParams) -> dict[str, Any]:
        return await self.task_view(await self._row(params.task_id))

    async def list(self, params: ListParams) -> dict[str, Any]:
        rows = await self.store.list_tasks(params.state, params.limit + 1, params.cursor)
        page = rows[: params.limit]
        return {
            "tasks": [await self.task_view(r, full=False) for r in page],
            "next_cursor": page[-1].id if len(rows) > params.limit else None,
        }

    async def _detached(self, work: Awaitable[T]) -> T:
        """Run `work` to its end even if the caller goes away (a client that disconnects
        mid-request must not leave an answer stored but its stream never woken)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled():
                t.exception()  # retrieved: the caller may be gone; an error is its answer

        task.add_done_callback(done)
        return await asyncio.shield(task)

    async def cancel(self, params: TaskIdParams) -> dict[str, Any]:
        row = await self._row(params.task_id)
        if TaskState(row.state) in TERMINAL:
            raise InvalidState(
                f"task {row.id} is already {row.state}; only a live task can be canceled",
                {"task_id": row.id, "state": row.state},
            )
        return await self._detached(self._cancel(row.id))

    async def _cancel(self, task_id: str) -> dict[str, Any]:
        await self.engine.cancel(task_id)
        row = await self._row(task_id)
        if TaskState(row.state) not in TERMINAL:
            await self.store.transition(row.id, TaskState.canceled, reason="canceled by client")
            row = await self._row(task_id)
        if row.state != TaskState.canceled:
            # It ended on its own between the check and the cancellation.
            raise InvalidState(
                f"task {row.id} is already {row.state}; only a live task can be canceled",
                {"task_id": row.id, "state": row.state},
            )
        return {"task_id": row.id, "state": TaskState.canceled.value}

    async def answer(self, params: AnswerParams) -> dict[str, Any]:
        row = await self._row(params.task_id)
        if TaskState(row.state) in TERMINAL:
            raise InvalidState(
                f"task {row.id} is {row.state}; it takes no more answers",
                {"task_id": row.id, "state": row.state},
            )
        questions = {q.id: q for q in await self.store.questions_of(row.id)}
        open_ids = {qid for qid, q in questions.items() if q.answer is None}
        if not open_ids:
            raise InvalidState(
                f"task {row.id} has no open questions (state {row.state})",
                {"task_id": row.id, "state": row.state},
            )
        unknown = sorted(set(params.answers) - set(questions))
        if unknown:
            raise InvalidParams(
                f"answers: unknown question ids: {', '.join(unknown)}; "
                f"open: {', '.join(sorted(open_ids))}",
                {"field": "answers", "unknown": unknown, "open": sorted(open_ids)},
            )
        blank = sorted(qid for qid, text in params.answers.items() if not text.strip())
        if blank:
            raise InvalidParams(
                f"answers: blank answer for {', '.join(blank)}",
                {"field": "answers", "blank": blank},
            )
        closed = sorted(set(params.answers) - open_ids)
        if closed:
            raise InvalidState(
                f"already answered: {', '.join(closed)}; open: {', '.join(sorted(open_ids))}",
                {"task_id": row.id, "state": row.state, "answered": closed},
            )
        return await self._detached(self._answer(row.id, params.answers))

    async def _answer(self, task_id: str, answers: dict[str, str]) -> dict[str, Any]:
        done = await self.store.answer_questions(task_id, answers, resume=TaskState.running.value)
        if not done:  # answered (or the task ended) since the checks above
            row = await self._row(task_id)
            raise InvalidState(
                f"task {task_id} took none of these answers (state "
                f"{row.state}): they were answered meanwhile or it ended",
                {"task_id": task_id, "state": row.state},
            )
        await self.store.append_event(task_id, "task.answered", {"questions": done})
        self.engine.wake(task_id)
        return {"task_id": task_id, "answered": done}

    async def approve(self, params: ApproveParams) -> dict[str, Any]:
        row = await self._row(params.task_id)
        if row.state != TaskState.awaiting_approval:
            raise InvalidState(
                f"task {row.id} is {row.state}, not awaiting_approval",
                {"task_id": row.id, "state": row.state},
            )
        return await self._detached(self._approve(row.id, params))

    async def _approve(self, task_id: str, params: ApproveParams) -> dict[str, Any]:
        decision = {"decision": params.decision, "comment": params.comment}
        state, round_, recorded = await self.store.decide(
            task_id,
            decision,
            waiting=TaskState.awaiting_approval.value,
            reject_to=TaskState.merging.value,
        )
        if not recorded:
            if state != TaskState.awaiting_approval:
                raise InvalidState(
                    f"task {task_id} is {state}, not awaiting_approval",
                    {"task_id": task_id, "state": state},
                )
            raise InvalidState(
                f"task {task_id} already has a decision on this result "
                f"(revision {round_}); it is acting on it",
                {"task_id": task_id, "state": state, "revision": round_},
            )
        await self.store.append_event(task_id, "task.decision", {**decision, "revision": round_})
        self.engine.wake(task_id)
        return {"task_id": task_id, "decision": params.decision}

    # --- daemon and config -----------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        counts = await self.store.counts_by_state()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 3),
            "store": redact_url(self.store.url),
            "tasks": {s.value: counts.get(s.value, 0) for s in TaskState},
            "concurrency": self.engine.concurrency(),
            "limits": {
                "active_tasks": await self._active.count(),
                "max_active_tasks": self.config.get("limits.max_active_tasks"),
            },
            "process": process_snapshot(),
        }

    async def config_get(self, params: ConfigGetParams) -> dict[str, Any]:
        try:
            if params.key is None:
                return {
                    "config": self.config.as_dict(),
                    "sources": {k: self.config.source_of(k) for k in self.config.values},
                }
            return {
                "key": params.key,
                "value": self.config.get(params.key),
                "source": self.config.source_of(params.key),
            }
        except ConfigError as exc:
            raise InvalidParams(str(exc), {"field": "key", "key": params.key}) from exc

    async def config_set(self, params: ConfigSetParams) -> dict[str, Any]:
        from daemon.config.layers import load_config  # local: reload after the write

        try:
            value = check_value(params.key, params.value, self.config.defaults)
            if params.key == "concurrency.ceiling":
                # Applied first: a ceiling the governor refuses is never written to the file.
                self.engine.set_ceiling(int(value))
            set_user_value(self.homes.config_file, params.key, value, self.config.defaults)
            self.config = load_config(self.homes.config_file)
        except ConfigError as exc:
            raise InvalidParams(
                str(exc), {"field": "value" if exc.key else "key", "key": params.key}
            ) from exc
        except ValueError as exc:
            raise InvalidParams(
                f"{params.key}: {exc}", {"field": "value", "key": params.key}
            ) from exc
        return {"key": params.key, "value": value, "source": self.config.source_of(params.key)}
