"""The store's tasks: creating them (once per idempotency key), reading them, and moving them
from state to state with the event that says so, in one transaction; and a code task's
repository facts, merged in as the engine learns them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from daemon.store import statements as sql
from daemon.store.events import NewEvent, add_event, as_new
from daemon.store.leases import Lease, stamp_new_task
from daemon.store.states import TERMINAL, check_move
from daemon.store.tables import AttachmentRow, TaskRow
from daemon.store.thread import StoreThread


@dataclass(frozen=True)
class RunStart:
    """What a run of a task reads before it begins, read in one transaction: the task, the
    keys of its finished steps (the memo's) and its attachments; and the state it left if the
    run's first move was written in that transaction too (`run_start`'s `first_move`)."""

    task: TaskRow
    step_keys: set[str]
    attachments: list[AttachmentRow]
    moved_from: str | None = None


#: A run's first move: the state to enter, and when (given the task's row as it is).
FirstMove = tuple[str, Callable[[TaskRow], bool]]


def _enter(
    conn: Connection,
    task_id: str,
    previous: str,
    new_state: str,
    fields: dict[str, Any],
    reason: str | None = None,
) -> NewEvent:
    """Move the task from `previous` to `new_state` (raises if that is not a legal move) with
    `fields`, and write its `task.state` event."""
    check_move(previous, new_state)
    sql.update_task(conn, task_id, {**fields, "state": new_state, "updated_at": time.time()})
    data: dict[str, Any] = {"state": new_state, "previous": previous}
    if reason:
        data["reason"] = reason
    return sql.insert_event(conn, task_id, "task.state", data)


def _add_task(
    s: Session, row: TaskRow, attachments: Sequence[AttachmentRow], lease: Lease | None
) -> None:
    s.add(row)
    # The task first: its attachments refer to it (foreign keys are on), its lease is set on it.
    s.flush()
    stamp_new_task(s.connection(), lease, row.id)
    if attachments:
        s.add_all(attachments)


class TaskQueries(StoreThread):
    """Reads and writes of the `tasks` table."""

    def _stamp(self, task_id: str) -> None:
        """The task just committed carries this store's lease (`stamp_new_task`)."""
        if self.lease is not None:
            self._stamped[task_id] = time.monotonic()

    async def create_task(
        self, row: TaskRow, attachments: Sequence[AttachmentRow] = ()
    ) -> NewEvent:
        """Create `row` with its `attachments`' metadata, in one transaction."""

        def work() -> NewEvent:
            with self._tx() as conn:
                sql.insert_task(conn, row)
                stamp_new_task(conn, self.lease, row.id)
                sql.insert_attachments(conn, attachments)
                data = {"state": row.state, "previous": None}
                ev = sql.insert_event(conn, row.id, "task.state", data)
            self._stamp(row.id)
            return ev

        return await self._write(work, lambda ev: [ev])

    async def create_task_once(
        self, row: TaskRow, attachments: Sequence[AttachmentRow] = ()
    ) -> tuple[TaskRow, bool]:
        """Create `row` (with its `attachments`) unless a task already holds its idempotency
        key.

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
                try:  # the insert is flushed at once (the lease is set on the row)
                    _add_task(s, row, attachments, self.lease)
                    ev = add_event(s, row.id, "task.state", {"state": row.state, "previous": None})
                    s.commit()
                    self._stamp(row.id)
                except IntegrityError:
                    s.rollback()
                    winner = s.exec(select(TaskRow).where(TaskRow.idempotency_key == key)).first()
                    if winner is None:
                        raise  # some other constraint: not a lost race
                    return winner, None
                return row, as_new(ev)

        task, ev = await self._write(work, lambda r: [r[1]])
        return task, ev is not None

    async def task_by_key(self, key: str) -> TaskRow | None:
        """The task created with idempotency key `key`, if any."""

        def work() -> TaskRow | None:
            with self._session() as s:
                return s.exec(select(TaskRow).where(TaskRow.idempotency_key == key)).first()

        return await self._run(work)

    async def run_start(self, task_id: str, first_move: FirstMove | None = None) -> RunStart | None:
        """The task with its finished steps' keys and its attachments (None: no such task),
        moved to `first_move`'s state with its event when its condition holds on the row:
        one round trip on the way from a task's start to its first model call, not four."""

        def work() -> tuple[RunStart | None, NewEvent | None]:
            with self._tx() as conn:
                row = sql.get_task_locked(conn, task_id)
                if row is None:
                    return None, None
                keys = sql.step_keys(conn, task_id)
                start = RunStart(row, keys, sql.attachment_rows(conn, task_id))
                if first_move is None or not first_move[1](row) or row.state in TERMINAL:
                    return start, None
                state, previous = first_move[0], row.state
                ev = _enter(conn, task_id, previous, state, {})
                row.state = state
                return replace(start, moved_from=previous), ev

        start, _ = await self._write(work, lambda r: [r[1]])
        return start

    async def get_task(self, task_id: str) -> TaskRow | None:
        def work() -> TaskRow | None:
            with self._tx() as conn:
                return sql.get_task(conn, task_id)

        return await self._run(work)

    async def list_tasks(self, state: str | None, limit: int, cursor: str | None) -> list[TaskRow]:
        """Tasks newest id first, `limit` at a time; `cursor` is the last id of the page before."""

        def work() -> list[TaskRow]:
            with self._session() as s:
                q = select(TaskRow)
                if state:
                    q = q.where(TaskRow.state == state)
                if cursor:
                    q = q.where(TaskRow.id < cursor)
                return list(s.exec(q.order_by(col(TaskRow.id).desc()).limit(limit)))

        return await self._run(work)

    async def tasks_by_update(
        self,
        states: Sequence[str] | None,
        limit: int,
        after: tuple[float, str] | None = None,
        changed_since: float | None = None,
    ) -> list[TaskRow]:
        """Tasks whose state changed last first (ties: newest id first), `limit` at a time;
        `after` is the (updated_at, id) of the page before's last task, `changed_since` keeps
        only tasks whose state changed at or after that time."""

        def work() -> list[TaskRow]:
            with self._session() as s:
                q = _changed_filter(select(TaskRow), states, changed_since)
                if after is not None:
                    at, task_id = after
                    q = q.where(
                        or_(
                            col(TaskRow.updated_at) < at,
                            and_(col(TaskRow.updated_at) == at, col(TaskRow.id) < task_id),
                        )
                    )
                q = q.order_by(col(TaskRow.updated_at).desc(), col(TaskRow.id).desc())
                return list(s.exec(q.limit(limit)))

        return await self._run(work)

    async def count_tasks(
        self, states: Sequence[str] | None, changed_since: float | None = None
    ) -> int:
        """How many tasks are in `states` (None: any) and changed state since `changed_since`."""

        def work() -> int:
            with self._session() as s:
                q = select(func.count()).select_from(TaskRow)
                return int(s.exec(_changed_filter(q, states, changed_since)).one())

        return await self._run(work)

    async def nonterminal_task_ids(self) -> list[str]:
        def work() -> list[str]:
            with self._session() as s:
                q = select(TaskRow.id).where(col(TaskRow.state).not_in([str(t) for t in TERMINAL]))
                return list(s.exec(q.order_by(TaskRow.id)))

        return await self._run(work)

    async def code_tasks(self) -> list[TaskRow]:
        """Every code task (one with `code_json`), in any state, oldest id first: the daemon
        reconciles their worktrees and branches at start."""

        def work() -> list[TaskRow]:
            with self._session() as s:
                q = select(TaskRow).where(col(TaskRow.code_json).is_not(None))
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
            with self._tx() as conn:
                previous = sql.task_state(conn, task_id)
                if previous is None:
                    raise KeyError(task_id)
                check_move(previous, new_state)
                sql.update_task(
                    conn, task_id, {**fields, "state": new_state, "updated_at": time.time()}
                )
                if previous == new_state:
                    return previous, None
                data: dict[str, Any] = {"state": new_state, "previous": previous}
                if reason:
                    data["reason"] = reason
                return previous, sql.insert_event(conn, task_id, "task.state", data)

        return await self._write(work, lambda r: [r[1]])

    async def advance(
        self,
        task_id: str,
        new_state: str,
        may_move: Callable[[str], bool],
        *,
        reason: str | None = None,
        **fields: Any,
    ) -> tuple[str | None, bool]:
        """Move a task to `new_state` with its event and `fields` when `may_move(its state)`
        holds (the move must also be legal); otherwise write only those of `fields` that
        differ. A task in a final state is left as it is. Decided and written in one
        transaction on the row as it is: one round trip where a read and a `transition`
        took two, and no move decided on a stale state.

        Returns the state it was in (None when there is no such task) and whether it moved.
        """

        def work() -> tuple[str | None, bool, NewEvent | None]:
            with self._tx() as conn:
                row = sql.get_task_locked(conn, task_id)
                if row is None:
                    return None, False, None
                previous = row.state
                if previous in TERMINAL:
                    return previous, False, None
                if previous != new_state and may_move(previous):
                    return (
                        previous,
                        True,
                        _enter(conn, task_id, previous, new_state, fields, reason),
                    )
                changed = {k: v for k, v in fields.items() if getattr(row, k) != v}
                if changed:
                    sql.update_task(conn, task_id, {**changed, "updated_at": time.time()})
                return previous, False, None

        previous, moved, _ = await self._write(work, lambda r: [r[2]])
        return previous, moved

    async def update_task(
        self, task_id: str, *, event: tuple[str, dict[str, Any]] | None = None, **fields: Any
    ) -> NewEvent | None:
        """Update a task's fields; with `event` (type, data), append it in the same
        transaction, so a crash never keeps the change and loses its event (or the reverse)."""

        def work() -> NewEvent | None:
            with self._tx() as conn:
                if not sql.update_task(conn, task_id, {**fields, "updated_at": time.time()}):
                    raise KeyError(task_id)
                return sql.insert_event(conn, task_id, *event) if event else None

        return await self._write(work, lambda ev: [ev])

    async def set_task_code(self, task_id: str, data: dict[str, Any]) -> None:
        """Merge `data`'s keys into the task's code facts (`code_json`, a JSON object).

        Read and written in one transaction on the store's thread, so two merges never lose
        each other's keys. The task's `updated_at` is left alone: it dates changes of state,
        and a watcher compares it with the time of the state event it has seen.
        """
        if not isinstance(data, dict):
            raise TypeError(f"set_task_code takes a dict, not {type(data).__name__}")
        # Made JSON first: a value that cannot be written fails here, before anything changes.
        update = json.loads(json.dumps(data))

        def work() -> None:
            with self._session() as s:
                row = s.get(TaskRow, task_id, with_for_update=True)
                if row is None:
                    raise KeyError(task_id)
                merged = json.loads(row.code_json) if row.code_json else {}
                merged.update(update)
                row.code_json = json.dumps(merged)
                s.add(row)
                s.commit()

        await self._run(work)


_Select = TypeVar("_Select", bound=Any)


def _changed_filter(
    q: _Select, states: Sequence[str] | None, changed_since: float | None
) -> _Select:
    """`q` kept to tasks in `states` (None: any) whose state changed at or after
    `changed_since` (None: any time): the filter `tasks_by_update` pages and `count_tasks`
    counts."""
    if states:
        q = q.where(col(TaskRow.state).in_(list(states)))
    if changed_since is not None:
        q = q.where(col(TaskRow.updated_at) >= changed_since)
    return q
