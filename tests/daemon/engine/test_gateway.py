"""The task gateway's memo: a call answered once is never asked again, whether its answer was
saved before this run began or earlier in the same run, although the gateway reads the memo
only for the keys that were saved when the run began (`saved_keys`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.func import entrypoint
from support.scripted import ScriptedCaller

from daemon.engine.gateway import TaskGateway
from daemon.store.store import Store, TaskRow


class _Slots:
    @contextlib.asynccontextmanager
    async def slot(self, task_id: str) -> AsyncIterator[None]:
        yield


async def _nothing() -> None:
    return None


async def _store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await store.open()
    now = time.time()
    await store.create_task(
        TaskRow(id="t1", state="running", goal="g", created_at=now, updated_at=now)
    )
    return store


async def _saved_keys(store: Store) -> set[str]:
    start = await store.run_start("t1")
    assert start is not None
    return start.step_keys


async def _in_a_run(gateway: TaskGateway, keys: list[str]) -> list[str]:
    """Each key's answer through the gateway, inside a LangGraph program as in a task run."""

    @entrypoint()
    async def program(_: Any) -> list[str]:
        out = []
        for key in keys:
            answer = await gateway(
                "executor", "execute", [{"role": "user", "content": key}], key=key
            )
            out.append(answer.text)
        return out

    result: list[str] = await program.ainvoke("go")
    return result


async def test_an_answer_saved_before_the_run_is_read_back_not_asked_again(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.put_step("t1", "exec:a:r0:a0", {"text": "saved", "data": None, "tool_calls": []})
    model = ScriptedCaller({"exec:*": "asked"})
    gateway = TaskGateway(
        store, "t1", _Slots(), model, _nothing, saved_keys=await _saved_keys(store)
    )
    assert await _in_a_run(gateway, ["exec:a:r0:a0", "exec:b:r0:a0"]) == ["saved", "asked"]
    assert model.keys("exec:*") == ["exec:b:r0:a0"]
    assert (await store.get_step("t1", "exec:b:r0:a0"))["text"] == "asked"
    await store.close()


async def test_a_key_answered_in_this_run_is_not_asked_again(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    model = ScriptedCaller({"review:*": ["first", "second"]})
    gateway = TaskGateway(store, "t1", _Slots(), model, _nothing, saved_keys=set())
    assert await _in_a_run(gateway, ["review:a:r0", "review:a:r0"]) == ["first", "first"]
    assert model.keys("review:*") == ["review:a:r0"]
    await store.close()


async def test_a_step_not_saved_when_the_run_began_is_not_read(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    await store.put_step("t1", "stream:a", {"output": "A"})
    await store.put_step("t1", "stream:b", {"output": "B"})
    model = ScriptedCaller({})
    known = TaskGateway(store, "t1", _Slots(), model, _nothing, saved_keys={"stream:a"})
    assert await known.saved("stream:a") == {"output": "A"}
    # Written after the run began (only this run could have): not read back.
    assert await known.saved("stream:b") is None
    unknown = TaskGateway(store, "t1", _Slots(), model, _nothing)
    assert await unknown.saved("stream:b") == {"output": "B"}
    assert await unknown.saved("stream:c") is None
    await store.close()
