"""A new thread's first read of its latest checkpoint is answered without the database; every
other read, and every read after its run, goes to the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.func import entrypoint

from daemon.engine.checkpoints import open_checkpoints
from daemon.engine.new_threads import NewThreads


class _Reads(AsyncSqliteSaver):
    """LangGraph's SQLite checkpointer, counting the reads that reach the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[str] = []

    async def aget_tuple(self, config: Any) -> Any:
        self.reads.append(config["configurable"]["thread_id"])
        return await super().aget_tuple(config)


class _Saver(NewThreads, _Reads):
    """As `NewThreadsSqliteSaver`, over the counting checkpointer."""


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


async def test_only_the_first_read_of_a_new_thread_is_skipped(tmp_path: Path) -> None:
    conn = await open_checkpoints(tmp_path / "checkpoints.sqlite")
    try:
        saver = _Saver(conn)
        await saver.setup()

        @entrypoint(checkpointer=saver)
        async def echo(text: str) -> str:
            return text.upper()

        saver.expect_new("t1")
        assert await echo.ainvoke("hi", _config("t1"), durability="sync") == "HI"
        assert saver.reads == []  # LangGraph's read as the run began was answered: none
        saver.forget_new("t1")
        # The run's checkpoint is in the database, and a later read finds it there.
        state = await echo.aget_state(_config("t1"))
        assert state.values == "HI" and saver.reads == ["t1"]
        # A thread not said to be new is read from the database.
        assert await echo.ainvoke("b", _config("t2"), durability="sync") == "B"
        assert saver.reads == ["t1", "t2"]
        # Said new, then its run ended before reading: the next read is the database's.
        saver.expect_new("t1")
        saver.forget_new("t1")
        assert (await echo.aget_state(_config("t1"))).values == "HI"
        # Said new and read once: the second read is the database's.
        saver.expect_new("t3")
        assert await saver.aget_tuple(_config("t3")) is None
        assert saver.reads == ["t1", "t2", "t1"]
        assert await saver.aget_tuple(_config("t3")) is None  # none there either
        assert saver.reads == ["t1", "t2", "t1", "t3"]
    finally:
        await conn.close()
