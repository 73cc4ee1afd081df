import socket
import unittest

from hubctl_hub.ports import ServerPorts, port_free

from .helpers import free_port, listening


def free_range(count):
    """The first of `count` neighbouring ports below the ephemeral range that nothing holds now."""
    for first in range(20000, 32000, count):
        if all(port_free(p) for p in range(first, first + count)):
            return first
    raise RuntimeError("no free ports")


class PortFreeTest(unittest.TestCase):
    def test_a_port_nothing_holds_is_free(self):
        self.assertTrue(port_free(free_port()))

    def test_a_port_held_on_ipv4_is_not_free(self):
        for host in ("127.0.0.1", "0.0.0.0"):
            with self.subTest(host=host), listening(socket.AF_INET, host) as held:
                self.assertFalse(port_free(held.getsockname()[1]))

    def test_a_port_held_on_ipv6_only_is_not_free(self):
        # [::] with IPV6_V6ONLY: a bind on 0.0.0.0 succeeds, the server would still not get the port.
        with listening(socket.AF_INET6, "::") as held:
            self.assertFalse(port_free(held.getsockname()[1]))


class ServerPortsTest(unittest.TestCase):
    def test_hands_out_each_port_once_and_never_a_held_one(self):
        first = free_range(6)
        with listening(socket.AF_INET, "127.0.0.1", first), listening(socket.AF_INET6, "::", first + 1):
            ports = ServerPorts(first, first + 5, hold_seconds=900)
            picked = [ports.pick() for _ in range(4)]
            self.assertEqual(sorted(picked), list(range(first + 2, first + 6)))
            with self.assertRaisesRegex(RuntimeError, f"^no free port for a user server in {first}-{first + 5}: "):
                ports.pick()

    def test_a_range_held_on_ipv4_and_on_ipv6_only_has_no_port(self):
        first = free_range(2)
        with listening(socket.AF_INET, "127.0.0.1", first), listening(socket.AF_INET6, "::", first + 1):
            with self.assertRaisesRegex(RuntimeError, f"^no free port for a user server in {first}-{first + 1}: "):
                ServerPorts(first, first + 1, hold_seconds=900).pick()

    def test_skips_the_ports_of_the_database(self):
        first = free_range(3)
        ports = ServerPorts(first, first + 2, hold_seconds=900)
        self.assertEqual({ports.pick(taken={first, first + 2}) for _ in range(1)}, {first + 1})

    def test_hands_a_port_out_again_after_the_hold(self):
        first = free_range(1)
        ports = ServerPorts(first, first, hold_seconds=0)
        self.assertEqual([ports.pick(), ports.pick()], [first, first])

    def test_is_one_allocator_for_every_spawner(self):
        import copy

        ports = ServerPorts(1, 2, hold_seconds=900)
        self.assertIs(copy.deepcopy(ports), ports)


if __name__ == "__main__":
    unittest.main()
