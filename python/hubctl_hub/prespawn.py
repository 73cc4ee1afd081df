"""The pre-spawn hook: the server's home (when hubctl makes it), the shared folders' links, a turn (when servers start in line), a port."""


class PreSpawn:
    """Spawner.pre_spawn_hook: make or check the home, place the shared folders' links, wait for a turn (when a queue is set), then take a port."""

    def __init__(self, ports, queue=None, homes=None, shares=None):
        self.ports = ports
        self.queue = queue
        self.homes = homes
        self.shares = shares

    def __deepcopy__(self, memo):
        return self

    async def __call__(self, spawner):
        if self.homes is not None:
            self.homes(spawner)
        if self.shares is not None:
            await self.shares(spawner)
        if self.queue is None:
            self.ports(spawner)
            return
        # A spawn cancelled while it waits leaves the line (enter's finally); one whose port cannot
        # be had gives its slot back at once, whatever the hub does next.
        await self.queue.enter(spawner)
        try:
            self.ports(spawner)
        except BaseException:
            self.queue.leave(spawner)
            raise
