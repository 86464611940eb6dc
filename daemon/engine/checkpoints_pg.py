"""The workflow's checkpoints on PostgreSQL, beside the store's tables in the same database.

A store shared by several daemons must share the checkpoints too: a daemon that takes over a
task resumes its LangGraph run from the last checkpoint the dead daemon wrote. LangGraph's
own `AsyncPostgresSaver` keeps them (tables `checkpoints`, `checkpoint_blobs`,
`checkpoint_writes`, `checkpoint_migrations`, which do not meet tierd's), on a psycopg pool.

Its `setup()` creates and migrates those tables; two daemons starting at once take turns
under the same advisory lock as the store's migration (`daemon.store.lock`). Imported only
for a PostgreSQL store: psycopg is the `postgres` extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from daemon.engine.new_threads import NewThreads
from daemon.store.lock import PG_LOCK_KEY

__all__ = ["delete_pg_thread", "open_pg_saver", "pg_conninfo"]

#: Connections the saver may hold: one task's step writes one checkpoint at a time, and
#: LangGraph writes a run's checkpoints in turn, so a few serve many concurrent tasks.
POOL_MAX = 8
_LOCK = "SELECT pg_advisory_lock(%s, hashtext(coalesce(current_schema(), '')))"
_UNLOCK = "SELECT pg_advisory_unlock(%s, hashtext(coalesce(current_schema(), '')))"
# As LangGraph's own `from_conn_string`: its queries expect dict rows and autocommit.
_CONNECTION = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


def pg_conninfo(url: str) -> str:
    """The store's SQLAlchemy URL ("postgresql+psycopg://...") as a libpq connection URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class NewThreadsPostgresSaver(NewThreads, AsyncPostgresSaver):
    """LangGraph's PostgreSQL checkpointer, told which threads are new (`new_threads`)."""


async def open_pg_saver(url: str) -> tuple[AsyncPostgresSaver, Callable[[], Awaitable[None]]]:
    """A set-up saver on the store's database, and what closes it."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        pg_conninfo(url), min_size=1, max_size=POOL_MAX, kwargs=_CONNECTION, open=False
    )
    await pool.open(wait=True)
    try:
        saver = NewThreadsPostgresSaver(pool)
        async with await psycopg.AsyncConnection.connect(pg_conninfo(url), autocommit=True) as lock:
            await lock.execute(_LOCK, (PG_LOCK_KEY,))
            try:
                await saver.setup()
            finally:
                await lock.execute(_UNLOCK, (PG_LOCK_KEY,))
    except BaseException:
        await pool.close()
        raise
    return saver, pool.close


async def delete_pg_thread(url: str, thread_id: str) -> bool:
    """Delete the checkpoints of `thread_id` (a task's id); whether it had any."""
    connect = psycopg.AsyncConnection.connect(
        pg_conninfo(url), autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    async with await connect as conn:
        tables = await conn.execute(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_name IN ('checkpoints', 'checkpoint_writes')"
        )
        found = await tables.fetchone()
        if found is None or found["n"] < 2:
            return False  # never set up: no thread in it
        had = await conn.execute(
            "SELECT 1 FROM checkpoints WHERE thread_id = %s UNION ALL "
            "SELECT 1 FROM checkpoint_writes WHERE thread_id = %s LIMIT 1",
            (thread_id, thread_id),
        )
        existed = await had.fetchone() is not None
        await AsyncPostgresSaver(conn).adelete_thread(thread_id)
    return existed
