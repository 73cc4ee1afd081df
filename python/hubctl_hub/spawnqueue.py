"""Servers start `slots` at a time, in arrival order; the others wait their turn on the spawn page."""

import asyncio

from jupyterhub.spawner import LocalProcessSpawner


class SpawnQueue:
    """Spawns in arrival order, `slots` at a time; a spawn holds its slot until it is over."""

    def __init__(self, slots):
        self.slots = slots
        self.starting = set()
        self.waiting = []

    def ahead(self, spawner):
        """How many wait before this spawner; None when it does not wait."""
        return self.waiting.index(spawner) if spawner in self.waiting else None

    async def enter(self, spawner):
        self.waiting.append(spawner)
        try:
            while self.waiting[0] is not spawner or len(self.starting) >= self.slots:
                await asyncio.sleep(0.25)
        finally:
            self.waiting.remove(spawner)
        self.starting.add(spawner)
        asyncio.ensure_future(self._leave_when_done(spawner))

    def leave(self, spawner):
        """Give the slot back at once (the rest of the pre-spawn hook failed)."""
        self.starting.discard(spawner)

    async def _leave_when_done(self, spawner):
        # The hub's handler marks a spawn pending until the server answered (or failed).
        try:
            await asyncio.sleep(0.25)
            while getattr(spawner, "_spawn_pending", False):
                await asyncio.sleep(0.25)
        finally:
            self.starting.discard(spawner)


# The spawner's own progress, taken once (when this module is first imported).
_progress = LocalProcessSpawner.progress
_queue = None


def show_place_in_line(queue, *job_spawners):
    """The spawn page of a LocalProcessSpawner says its place in `queue` while it waits.

    So does that of each class in `job_spawners` (batchspawner's SlurmSpawner on a Slurm hub): its
    turn in this hub's line comes before its job is submitted, and its own progress (the job's
    pending reason, hubctl_hub.slurm) after.
    """
    global _queue
    _queue = queue
    LocalProcessSpawner.progress = progress_in_line
    for spawner_class in job_spawners:
        spawner_class.progress = _job_progress_in_line(spawner_class.progress)


async def waiting_in_line(self, where):
    """The events of a spawn's place in line, while it waits; `where`: what starts a few at a time."""
    said = None
    while _queue is not None and _queue.ahead(self) is not None:
        ahead = _queue.ahead(self)
        if ahead != said:
            said = ahead
            who = "you are next" if ahead == 0 else f"{ahead} ahead of you"
            yield {"progress": 1, "message": f"Waiting for a turn to start ({who}; {_queue.slots} {where})"}
        await asyncio.sleep(0.5)


async def progress_in_line(self):
    """The spawn page's progress: its place in line while it waits, then the spawner's own."""
    async for event in waiting_in_line(self, "servers start at a time on this machine"):
        yield event
    async for event in _progress(self):
        yield event


def _job_progress_in_line(own):
    async def progress(self):
        """The spawn page's progress: its place in the hub's line, then its job's own (Slurm's reason)."""
        async for event in waiting_in_line(self, "servers' jobs are submitted and started at a time by this hub"):
            yield event
        async for event in own(self):
            yield event

    return progress
