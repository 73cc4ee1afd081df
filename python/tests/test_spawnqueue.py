import asyncio
import unittest

from jupyterhub.spawner import LocalProcessSpawner

from hubctl_hub import spawnqueue
from hubctl_hub.prespawn import PreSpawn
from hubctl_hub.spawnqueue import SpawnQueue


class Spawner:
    """As the hub's handler leaves it while a spawn is under way: pending until the server answered."""

    def __init__(self, name):
        self.name = name
        self._spawn_pending = True
        self.port = None

    def __repr__(self):
        return self.name


def take_port(spawner):
    spawner.port = 1


async def got_in(task):
    """Whether a spawn waiting in line gets its turn (within 10 s: far longer than a turn takes)."""
    try:
        await asyncio.wait_for(task, 10)
        return True
    except asyncio.TimeoutError:
        return False


class SpawnQueueTest(unittest.IsolatedAsyncioTestCase):
    async def test_spawns_in_arrival_order_slots_at_a_time(self):
        queue = SpawnQueue(2)
        hook = PreSpawn(take_port, queue)
        a, b, d = Spawner("a"), Spawner("b"), Spawner("d")
        await hook(a)
        await hook(b)
        waiting = asyncio.ensure_future(hook(d))
        await asyncio.sleep(0.6)
        self.assertEqual((queue.waiting, queue.starting, queue.ahead(d)), ([d], {a, b}, 0))
        b._spawn_pending = False  # b's spawn is over: d's turn
        self.assertTrue(await got_in(waiting))
        self.assertEqual(d.port, 1)

    async def test_a_spawn_cancelled_while_it_waits_leaves_the_line(self):
        queue = SpawnQueue(1)
        hook = PreSpawn(take_port, queue)
        a, b, d = Spawner("a"), Spawner("b"), Spawner("d")
        await hook(a)  # a starts; b and then d wait in line
        waiting_b = asyncio.ensure_future(hook(b))
        await asyncio.sleep(0.1)
        waiting_d = asyncio.ensure_future(hook(d))
        await asyncio.sleep(0.1)
        self.assertEqual(queue.waiting, [b, d])
        waiting_b.cancel()  # b's spawn is cancelled while it waits (the user left, the hub stopped it)
        with self.assertRaises(asyncio.CancelledError):
            await waiting_b
        self.assertEqual(queue.waiting, [d])
        a._spawn_pending = False  # a's spawn is over: d's turn, not the cancelled b's
        self.assertTrue(await got_in(waiting_d), "the spawn behind a cancelled one gets its turn")
        self.assertEqual((queue.waiting, queue.starting), ([], {d}))

    async def test_a_pre_spawn_hook_that_raises_gives_its_turn_back(self):
        queue = SpawnQueue(1)
        e, f = Spawner("e"), Spawner("f")

        def no_port_for_e(spawner):
            if spawner is e:
                raise RuntimeError("no free port")
            take_port(spawner)

        hook = PreSpawn(no_port_for_e, queue)
        # e's port cannot be had: the hook raises, e's spawn still marked pending (the hub ends it later).
        with self.assertRaisesRegex(RuntimeError, "^no free port$"):
            await asyncio.wait_for(hook(e), 10)
        self.assertEqual(queue.starting, set())
        self.assertTrue(await got_in(asyncio.ensure_future(hook(f))), "the next spawn gets the slot at once")
        self.assertEqual(f.port, 1)

    async def test_a_slurm_spawn_page_says_its_place_in_line_then_its_jobs_own_progress(self):
        class JobSpawner(Spawner):
            async def progress(self):
                yield {"message": "Your server's Slurm job 7 waits in the queue"}

        self.addCleanup(setattr, LocalProcessSpawner, "progress", LocalProcessSpawner.progress)
        self.addCleanup(setattr, spawnqueue, "_queue", spawnqueue._queue)
        queue = SpawnQueue(1)
        hook = PreSpawn(take_port, queue)
        a, b = JobSpawner("a"), JobSpawner("b")
        await hook(a)
        waiting = asyncio.ensure_future(hook(b))
        await asyncio.sleep(0.1)
        spawnqueue.show_place_in_line(queue, JobSpawner)
        said = []

        async def read():
            async for event in b.progress():
                said.append(event["message"])

        reading = asyncio.ensure_future(read())
        await asyncio.sleep(0.1)
        a._spawn_pending = False  # a's spawn is over: b's turn, then its job's own progress
        self.assertTrue(await got_in(waiting))
        await asyncio.wait_for(reading, 10)
        self.assertEqual(
            said,
            [
                "Waiting for a turn to start (you are next; 1 servers' jobs are submitted and started at a time by this hub)",
                "Your server's Slurm job 7 waits in the queue",
            ],
        )

    async def test_without_a_queue_a_port_at_once(self):
        homes = []
        s = Spawner("s")
        await PreSpawn(take_port, None, homes.append)(s)
        self.assertEqual((s.port, homes), (1, [s]))


if __name__ == "__main__":
    unittest.main()
