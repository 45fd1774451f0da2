"""Dead letters are operable: list them, put them back in the queue, purge them."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from scraper.keys import TASK_FIELD, TargetKeys
from scraper.ledger import reopen
from scraper.tasks import Task


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def list_dead(client: aioredis.Redis, keys: TargetKeys) -> list[dict[str, Any]]:
    entries: Any = await client.xrange(keys.dead)
    return [{"id": _text(entry_id), **{_text(k): _text(v) for k, v in fields.items()}} for entry_id, fields in entries]


async def requeue(client: aioredis.Redis, keys: TargetKeys, ids: list[str] | None) -> int:
    """Put dead pages back with their attempts reset; None = all of them."""
    entries: Any
    if ids is None:
        entries = await client.xrange(keys.dead)
    else:
        entries = []
        for entry_id in ids:
            found = await client.xrange(keys.dead, min=entry_id, max=entry_id)
            if not found:
                from scraper.errors import UserError  # noqa: PLC0415

                raise UserError(
                    f"dead requeue: no dead letter {entry_id!r} (see `scraper dead --target {keys.target} list`)"
                )
            entries.extend(found)
    for entry_id, fields in entries:
        task = Task.decode(fields[b"task"]).fresh()
        # Add directly and remove the letter in the same transaction.
        pipe = client.pipeline(transaction=True)
        pipe.xadd(keys.tasks, {TASK_FIELD: task.encode()})
        await reopen(client, pipe, keys, task)  # its video's ledger counts the page as open again
        pipe.xdel(keys.dead, entry_id)
        pipe.hincrby(keys.stats, "dead_requeued", 1)
        await pipe.execute()
    return len(entries)


async def purge(client: aioredis.Redis, keys: TargetKeys) -> int:
    count = int(await client.xlen(keys.dead))
    await client.delete(keys.dead)
    return count


def render(letters: list[dict[str, Any]]) -> str:
    if not letters:
        return "no dead letters"
    lines = [f"{'id':<17} {'page':<34} {'attempts':>8}  {'reason':<14} error"]
    for letter in letters:
        lines.append(
            f"{letter['id']:<17} {letter.get('fingerprint', ''):<34} {letter.get('attempts', ''):>8}  "
            f"{letter.get('reason', ''):<14} {letter.get('error', '')}"
        )
    lines.append(f"{len(letters)} dead letters")
    return "\n".join(lines)
