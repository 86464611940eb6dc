"""Finding a task the short ways, in the service (so every client gets them): a unique prefix of
its id, as git takes commits; `@last`, the newest task; an ambiguous prefix refused with the
candidates; and listing tasks in any of several states, paged as one list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.service.errors import InvalidParams, TaskNotFound
from daemon.service.params import ListParams
from daemon.service.task_views import TaskViews, find_task
from daemon.store.store import Store, TaskRow

IDS = {
    # id: state. Three share "t01a0000", two of them "t01a00001".
    "t01a00001aaa": "completed",
    "t01a00001bbb": "input_required",
    "t01a00002ccc": "awaiting_approval",
    "t01b00003ddd": "running",
    "t01b00004eee": "input_required",
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def _fill(store: Store) -> None:
    for i, (task_id, state) in enumerate(sorted(IDS.items())):
        await store.create_task(
            TaskRow(id=task_id, state=state, goal=f"goal {i}", created_at=i, updated_at=i)
        )


async def test_an_id_a_unique_prefix_and_at_last(store: Store) -> None:
    with pytest.raises(TaskNotFound, match="no tasks yet"):
        await find_task(store, "@last")
    await _fill(store)
    assert (await find_task(store, "t01a00001aaa")).id == "t01a00001aaa"
    assert (await find_task(store, "t01a00002")).id == "t01a00002ccc"
    assert (await find_task(store, "t01b00004")).id == "t01b00004eee"
    assert (await find_task(store, "@last")).id == "t01b00004eee"
    # The detail is of the full id, whatever named it.
    detail = await TaskViews(store).detail(await find_task(store, "t01b00003"))
    assert detail.id == "t01b00003ddd"


async def test_an_ambiguous_prefix_names_the_candidates(store: Store) -> None:
    await _fill(store)
    with pytest.raises(InvalidParams) as caught:
        await find_task(store, "t01a0000")
    assert caught.value.data["candidates"] == ["t01a00002ccc", "t01a00001bbb", "t01a00001aaa"]
    assert caught.value.data["field"] == "task_id"
    assert "t01a00001aaa" in caught.value.message and "more of the id" in caught.value.message
    with pytest.raises(InvalidParams):
        await find_task(store, "t01a00001")


@pytest.mark.parametrize("name", ["t01", "t01c", "t01a0000x", "T01A", "01a00001aaa", "@first"])
async def test_what_names_no_task(store: Store, name: str) -> None:
    await _fill(store)
    with pytest.raises(TaskNotFound):
        await find_task(store, name)


async def test_many_states_list_as_one_newest_first_across_pages(store: Store) -> None:
    await _fill(store)
    views = TaskViews(store)
    wanted = ["input_required", "awaiting_approval"]
    expected = sorted((i for i, s in IDS.items() if s in wanted), reverse=True)
    seen: list[str] = []
    cursor = None
    while True:
        page = await views.list(ListParams(state=wanted, limit=2, cursor=cursor))
        seen += [t.id for t in page.tasks]
        assert all(t.state in wanted for t in page.tasks)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    one = await views.list(ListParams(state=["running"]))
    assert [t.id for t in one.tasks] == ["t01b00003ddd"]
    with pytest.raises(ValueError):
        ListParams.model_validate({"state": []})
