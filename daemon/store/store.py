"""The durable task store: sqlmodel tables on SQLite (WAL) or any SQLAlchemy URL.

All database work runs on one dedicated thread, so the event loop never blocks on SQLite and
writes are serialised (event ids come out in commit order). A state change and its event are
written in one transaction: a reader never sees one without the other.

The schema is versioned in the `meta` table. An older database is migrated at start; a newer
one (from a later tierd) is refused with a message rather than silently misread.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import event as sa_event
from sqlalchemy import func, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, UniqueConstraint, create_engine, select

from daemon.store.states import TERMINAL, check_move

SCHEMA_VERSION = 3
T = TypeVar("T")


class TaskRow(SQLModel, table=True):
    __tablename__ = "tasks"
    id: str = Field(primary_key=True)
    state: str = Field(index=True)
    goal: str
    context: str = ""
    options_json: str = "{}"
    created_at: float
    updated_at: float
    result: str | None = None
    report_json: str | None = None
    error: str | None = None
    plan_json: str | None = None
    settings_json: str | None = None
    # The client's idempotency key: unique, so two submits with one key make one task (NULLs
    # do not collide). Written in the transaction that creates the task.
    idempotency_key: str | None = Field(default=None, unique=True, index=True)


class StreamRow(SQLModel, table=True):
    __tablename__ = "streams"
    __table_args__ = (UniqueConstraint("task_id", "stream_id"),)
    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True, foreign_key="tasks.id")
    stream_id: str
    parent_id: str | None = None
    title: str = ""
    spec_json: str = "{}"
    state: str = "pending"
    output: str | None = None
    verdict: str | None = None
    reason: str | None = None
    rounds: int = 0
    depth: int = 0
    started_at: float | None = None
    ended_at: float | None = None


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    # AUTOINCREMENT: ids are never reused, so Last-Event-ID stays meaningful forever.
    __table_args__ = {"sqlite_autoincrement": True}
    id: int | None = Field(default=None, primary_key=True)
    task_id: str | None = Field(default=None, index=True)
    type: str
    data_json: str = "{}"
    created_at: float


class UsageRow(SQLModel, table=True):
    __tablename__ = "usage"
    id: int | None = Field(default=None, primary_key=True)
    task_id: str = Field(index=True)
    stream_id: str | None = None
    role: str
    purpose: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    outcome: str = "ok"
    attempts: int = 1
    error: str | None = None
    started_at: float = 0.0


class StepRow(SQLModel, table=True):
    """A finished unit of work (a model call's parsed result), keyed within its task.

    This is what makes "a finished stream is never called again" hold even if the workflow's
    own checkpoint cannot be matched after a crash: every role call looks here first.
    """

    __tablename__ = "steps"
    task_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value_json: str
    created_at: float


class QuestionRow(SQLModel, table=True):
    __tablename__ = "questions"
    id: str = Field(primary_key=True)
    task_id: str = Field(index=True)
    stream_id: str | None = None
    question: str
    answer: str | None = None
    created_at: float
    answered_at: float | None = None


class MetaRow(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class SchemaTooNew(RuntimeError):
    pass


@dataclass
class NewEvent:
    id: int
    task_id: str | None
    type: str
    data: dict[str, Any]
    created_at: float


def _v1_to_v2(engine: Engine) -> None:
    # v2 added the step memo and the questions table; existing rows are untouched.
    SQLModel.metadata.create_all(engine, tables=[StepRow.__table__, QuestionRow.__table__])


def _v2_to_v3(engine: Engine) -> None:
    # v3 added tasks.idempotency_key. SQLite cannot add a UNIQUE column, so the column is added
    # plain and made unique by the same unique index a new database gets from the model.
    # Each step is skipped when already done: the version is recorded in a later transaction,
    # so a crash between the two must not leave a database that fails this step forever.
    with engine.begin() as conn:
        found = inspect(conn)
        if "idempotency_key" not in {c["name"] for c in found.get_columns("tasks")}:
            conn.execute(text("ALTER TABLE tasks ADD COLUMN idempotency_key VARCHAR"))
        have = {i["name"] for i in found.get_indexes("tasks")}
        for index in TaskRow.__table__.indexes:  # type: ignore[attr-defined]
            if list(index.columns.keys()) == ["idempotency_key"] and index.name not in have:
                index.create(conn)


#: from-version -> the function that moves the schema one version up.
MIGRATIONS: dict[int, Callable[[Engine], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def redact_url(url: str) -> str:
    """The store URL without a password, for status output."""
    return make_url(url).render_as_string(hide_password=True)


def event_to_dict(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "task_id": row.task_id,
        "type": row.type,
        "data": json.loads(row.data_json),
        "created_at": row.created_at,
    }


class Store:
    """Async facade over the database; every method runs on the store's own thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierd-store")
        self._engine: Engine | None = None
        self._listeners: list[Callable[[NewEvent], None]] = []

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open_sync)

    async def close(self) -> None:
        if self._engine is not None:
            await self._run(self._engine.dispose)
        self._executor.shutdown(wait=True)

    def add_listener(self, listener: Callable[[NewEvent], None]) -> None:
        """Called on the event loop after each committed event."""
        self._listeners.append(listener)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _write(
        self, fn: Callable[[], T], announce: Callable[[T], Sequence[NewEvent | None]]
    ) -> T:
        """Run a write on the store thread and announce the events it committed.

        The announcement is tied to the commit, not to the caller: a caller cancelled while
        the thread commits (a task cancelled mid-write) must not leave listeners (the event
        feed, the active-task count) without an event that is in the database.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn)

        def committed(f: asyncio.Future[T]) -> None:
            if not f.cancelled() and f.exception() is None:
                self._emit([ev for ev in announce(f.result()) if ev is not None])

        future.add_done_callback(committed)
        return await asyncio.shield(future)

    def _open_sync(self) -> None:
        url = make_url(self.url)
        is_sqlite = url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(self.url, **kwargs)
        if is_sqlite:

            @sa_event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable in WAL mode except for a power cut; commits stay fast.
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

        self._engine = engine
        self._migrate(engine)

    def _migrate(self, engine: Engine) -> None:
        tables = set(inspect(engine).get_table_names())
        if "meta" not in tables:
            if tables & {"tasks", "events"}:
                raise SchemaTooNew(
                    "the database has tierd tables but no schema version: "
                    "it was not made by tierd; point store.url elsewhere"
                )
            SQLModel.metadata.create_all(engine)
            self._set_version(engine, SCHEMA_VERSION)
            return
        with Session(engine) as s:
            row = s.get(MetaRow, "schema_version")
            version = int(row.value) if row else 1
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database schema is version {version}, newer than this tierd understands "
                f"({SCHEMA_VERSION}): upgrade tierd, or point store.url at another database"
            )
        while version < SCHEMA_VERSION:
            MIGRATIONS[version](engine)
            version += 1
            self._set_version(engine, version)

    @staticmethod
    def _set_version(engine: Engine, version: int) -> None:
        with Session(engine) as s:
            s.merge(MetaRow(key="schema_version", value=str(version)))
            s.commit()

    def _session(self) -> Session:
        assert self._engine is not None, "Store.open() was not awaited"
        return Session(self._engine, expire_on_commit=False)

    def _emit(self, events: Sequence[NewEvent]) -> None:
        for ev in events:
            for listener in self._listeners:
                listener(ev)

    @staticmethod
    def _add_event(s: Session, task_id: str | None, type_: str, data: dict[str, Any]) -> EventRow:
        row = EventRow(
            task_id=task_id, type=type_, data_json=json.dumps(data), created_at=time.time()
        )
        s.add(row)
        return row

    @staticmethod
    def _as_new(row: EventRow) -> NewEvent:
        assert row.id is not None
        return NewEvent(row.id, row.task_id, row.type, json.loads(row.data_json), row.created_at)

    # --- tasks -----------------------------------------------------------------------------

    async def create_task(self, row: TaskRow) -> NewEvent:
        def work() -> NewEvent:
            with self._session() as s:
                s.add(row)
                ev = self._add_event(
                    s, row.id, "task.state", {"state": row.state, "previous": None}
                )
                s.commit()
                return self._as_new(ev)

        return await self._write(work, lambda ev: [ev])

    async def create_task_once(self, row: TaskRow) -> tuple[TaskRow, bool]:
        """Create `row` unless a task already holds its idempotency key.

        Returns (the task, created). With a key that is taken, nothing is written and the
        task that holds it comes back with created False. The look-up and the insert share
        one transaction on the store's single thread; the unique index still decides if
        another process writes the same database, and losing that race reads the winner.
        """
        key = row.idempotency_key
        assert key is not None, "create_task_once needs an idempotency key"

        def work() -> tuple[TaskRow, NewEvent | None]:
            with self._session() as s:
                existing = s.exec(select(TaskRow).where(TaskRow.idempotency_key == key)).first()
                if existing is not None:
                    return existing, None
                s.add(row)
                ev = self._add_event(
                    s, row.id, "task.state", {"state": row.state, "previous": None}
                )
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
                    winner = s.exec(select(TaskRow).where(TaskRow.idempotency_key == key)).first()
                    if winner is None:
                        raise  # some other constraint: not a lost race
                    return winner, None
                return row, self._as_new(ev)

        task, ev = await self._write(work, lambda r: [r[1]])
        return task, ev is not None

    async def task_by_key(self, key: str) -> TaskRow | None:
        """The task created with idempotency key `key`, if any."""

        def work() -> TaskRow | None:
            with self._session() as s:
                return s.exec(select(TaskRow).where(TaskRow.idempotency_key == key)).first()

        return await self._run(work)

    async def get_task(self, task_id: str) -> TaskRow | None:
        def work() -> TaskRow | None:
            with self._session() as s:
                return s.get(TaskRow, task_id)

        return await self._run(work)

    async def list_tasks(self, state: str | None, limit: int, cursor: str | None) -> list[TaskRow]:
        def work() -> list[TaskRow]:
            with self._session() as s:
                q = select(TaskRow)
                if state:
                    q = q.where(TaskRow.state == state)
                if cursor:
                    q = q.where(TaskRow.id < cursor)
                return list(s.exec(q.order_by(TaskRow.id.desc()).limit(limit)))  # type: ignore[union-attr]

        return await self._run(work)

    async def nonterminal_task_ids(self) -> list[str]:
        def work() -> list[str]:
            with self._session() as s:
                q = select(TaskRow.id).where(TaskRow.state.not_in([str(t) for t in TERMINAL]))  # type: ignore[attr-defined]
                return list(s.exec(q.order_by(TaskRow.id)))

        return await self._run(work)

    async def counts_by_state(self) -> dict[str, int]:
        def work() -> dict[str, int]:
            with self._session() as s:
                q = select(TaskRow.state, func.count()).group_by(TaskRow.state)
                return {state: n for state, n in s.exec(q)}

        return await self._run(work)

    async def transition(
        self, task_id: str, new_state: str, *, reason: str | None = None, **fields: Any
    ) -> tuple[str, NewEvent | None]:
        """Move a task to `new_state` (checked) and update fields, with its event, atomically.

        Returns the previous state and the event (None when the state did not change).
        """

        def work() -> tuple[str, NewEvent | None]:
            with self._session() as s:
                row = s.get(TaskRow, task_id)
                if row is None:
                    raise KeyError(task_id)
                previous = row.state
                check_move(previous, new_state)
                row.state = new_state
                row.updated_at = time.time()
                for k, v in fields.items():
                    setattr(row, k, v)
                s.add(row)
                ev = None
                if previous != new_state:
                    data: dict[str, Any] = {"state": new_state, "previous": previous}
                    if reason:
                        data["reason"] = reason
                    ev = self._add_event(s, task_id, "task.state", data)
                s.commit()
                return previous, (self._as_new(ev) if ev else None)

        return await self._write(work, lambda r: [r[1]])

    async def update_task(
        self, task_id: str, *, event: tuple[str, dict[str, Any]] | None = None, **fields: Any
    ) -> NewEvent | None:
        """Update a task's fields; with `event` (type, data), append it in the same
        transaction, so a crash never keeps the change and loses its event (or the reverse)."""

        def work() -> NewEvent | None:
            with self._session() as s:
                row = s.get(TaskRow, task_id)
                if row is None:
                    raise KeyError(task_id)
                for k, v in fields.items():
                    setattr(row, k, v)
                row.updated_at = time.time()
                s.add(row)
                ev = self._add_event(s, task_id, *event) if event else None
                s.commit()
                return self._as_new(ev) if ev else None

        return await self._write(work, lambda ev: [ev])

    # --- events ----------------------------------------------------------------------------

    async def append_event(self, task_id: str | None, type_: str, data: dict[str, Any]) -> NewEvent:
        def work() -> NewEvent:
            with self._session() as s:
                ev = self._add_event(s, task_id, type_, data)
                s.commit()
                return self._as_new(ev)

        return await self._write(work, lambda ev: [ev])

    async def events_after(
        self, last_id: int, task_id: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            with self._session() as s:
                q = select(EventRow).where(EventRow.id > last_id)  # type: ignore[operator]
                if task_id is not None:
                    q = q.where(EventRow.task_id == task_id)
                rows = s.exec(q.order_by(EventRow.id).limit(limit))  # type: ignore[arg-type]
                return [event_to_dict(r) for r in rows]

        return await self._run(work)

    async def last_event_id(self) -> int:
        def work() -> int:
            with self._session() as s:
                return int(s.exec(select(func.max(EventRow.id))).one() or 0)

        return await self._run(work)

    # --- streams ---------------------------------------------------------------------------

    async def upsert_stream(
        self,
        task_id: str,
        stream_id: str,
        *,
        step: tuple[str, Any] | None = None,
        event: tuple[str, dict[str, Any]] | None = None,
        **fields: Any,
    ) -> NewEvent | None:
        """Create or update a stream's row. With `step` (key, value) the step memo and with
        `event` (type, data) the event are written in the same transaction: a stream whose
        output is memoised is then never left looking unfinished after a crash."""

        def work() -> NewEvent | None:
            with self._session() as s:
                row = s.exec(
                    select(StreamRow).where(
                        StreamRow.task_id == task_id, StreamRow.stream_id == stream_id
                    )
                ).first()
                if row is None:
                    row = StreamRow(task_id=task_id, stream_id=stream_id)
                for k, v in fields.items():
                    setattr(row, k, v)
                s.add(row)
                if step is not None:
                    s.merge(
                        StepRow(
                            task_id=task_id,
                            key=step[0],
                            value_json=json.dumps(step[1]),
                            created_at=time.time(),
                        )
                    )
                ev = self._add_event(s, task_id, *event) if event else None
                s.commit()
                return self._as_new(ev) if ev else None

        return await self._write(work, lambda ev: [ev])

    async def streams_of(self, task_id: str) -> list[StreamRow]:
        def work() -> list[StreamRow]:
            with self._session() as s:
                q = select(StreamRow).where(StreamRow.task_id == task_id)
                return list(s.exec(q.order_by(StreamRow.id)))  # type: ignore[arg-type]

        return await self._run(work)

    # --- usage -----------------------------------------------------------------------------

    async def record_usage(self, row: UsageRow) -> None:
        def work() -> None:
            with self._session() as s:
                s.add(row)
                s.commit()

        await self._run(work)

    async def usage_of(self, task_id: str) -> list[UsageRow]:
        def work() -> list[UsageRow]:
            with self._session() as s:
                q = select(UsageRow).where(UsageRow.task_id == task_id)
                return list(s.exec(q.order_by(UsageRow.id)))  # type: ignore[arg-type]

        return await self._run(work)

    # --- step memo -------------------------------------------------------------------------

    async def get_step(self, task_id: str, key: str) -> Any | None:
        def work() -> Any | None:
            with self._session() as s:
                row = s.get(StepRow, (task_id, key))
                return None if row is None else json.loads(row.value_json)

        return await self._run(work)

    async def put_step(self, task_id: str, key: str, value: Any) -> None:
        def work() -> None:
            with self._session() as s:
                s.merge(
                    StepRow(
                        task_id=task_id,
                        key=key,
                        value_json=json.dumps(value),
                        created_at=time.time(),
                    )
                )
                s.commit()

        await self._run(work)

    # --- questions -------------------------------------------------------------------------

    async def add_question(self, row: QuestionRow) -> None:
        def work() -> None:
            with self._session() as s:
                s.merge(row)
                s.commit()

        await self._run(work)

    async def questions_of(self, task_id: str) -> list[QuestionRow]:
        def work() -> list[QuestionRow]:
            with self._session() as s:
                q = select(QuestionRow).where(QuestionRow.task_id == task_id)
                return list(s.exec(q.order_by(QuestionRow.created_at)))  # type: ignore[arg-type]

        return await self._run(work)

    async def answer_questions(
        self, task_id: str, answers: dict[str, str], *, resume: str | None = None
    ) -> list[str]:
        """Store answers; return the ids that were open and are now answered.

        A task that has ended takes no answers. With `resume`, a task in input_required
        that got at least one answer moves to that state in the same transaction (with its
        event): an answer always unblocks the stream that asked, so a client that reads the
        task right after answering never sees the stale wait.
        """

        def work() -> tuple[list[str], NewEvent | None]:
            done = []
            ev = None
            with self._session() as s:
                task = s.get(TaskRow, task_id)
                if task is None or task.state in TERMINAL:
                    return [], None
                for qid, answer in answers.items():
                    row = s.get(QuestionRow, qid)
                    if row is None or row.task_id != task_id or row.answer is not None:
                        continue
                    row.answer = answer
                    row.answered_at = time.time()
                    s.add(row)
                    done.append(qid)
                if done and resume and task.state == "input_required":
                    ev = self._move_in(s, task, resume, f"{len(done)} answer(s) received")
                s.commit()
                return done, (self._as_new(ev) if ev else None)

        done, ev = await self._run(work)
        if ev:
            self._emit([ev])
        return done

    async def decide(
        self, task_id: str, value: dict[str, Any], *, waiting: str, reject_to: str | None = None
    ) -> tuple[str, int | None, bool]:
        """Record a human decision on the result the task waits with, atomically.

        The decision is taken only while the task is in `waiting` (awaiting_approval) and
        only once per wait: it is stored as step `approval:<round>`, where the step
        `approval_round` (written by the workflow before it starts to wait) says which
        round the task waits on. A rejection moves the task to `reject_to` in the same
        transaction, so the task never looks as if it still waited for the decision it got.
        Returns (state, round, recorded); recorded is False when the state is wrong or the
        round already has a decision.
        """

        def work() -> tuple[str, int | None, bool, NewEvent | None]:
            with self._session() as s:
                task = s.get(TaskRow, task_id)
                if task is None:
                    raise KeyError(task_id)
                if task.state != waiting:
                    return task.state, None, False, None
                step = s.get(StepRow, (task_id, "approval_round"))
                round_ = int(json.loads(step.value_json)) if step else 0
                key = f"approval:{round_}"
                if s.get(StepRow, (task_id, key)) is not None:
                    return task.state, round_, False, None
                s.add(
                    StepRow(
                        task_id=task_id,
                        key=key,
                        value_json=json.dumps(value),
                        created_at=time.time(),
                    )
                )
                ev = None
                if reject_to and value.get("decision") == "reject":
                    ev = self._move_in(s, task, reject_to, "result rejected: revising it")
                s.commit()
                return task.state, round_, True, (self._as_new(ev) if ev else None)

        state, round_, recorded, ev = await self._run(work)
        if ev:
            self._emit([ev])
        return state, round_, recorded

    def _move_in(self, s: Session, task: TaskRow, new_state: str, reason: str) -> EventRow:
        """A checked state change with its event, inside the caller's transaction."""
        previous = task.state
        check_move(previous, new_state)
        task.state = new_state
        task.updated_at = time.time()
        s.add(task)
        return self._add_event(
            s, task.id, "task.state", {"state": new_state, "previous": previous, "reason": reason}
        )

    async def execute_raw(self, sql: str) -> None:
        """For tests and migrations only."""

        def work() -> None:
            assert self._engine is not None
            with self._engine.begin() as conn:
                conn.execute(text(sql))

        await self._run(work)
