import os
import socket
import unittest

from hubctl_hub import owners

from .helpers import LISTEN, PARENT, Children, free_port, listening


class PortOwnerTest(unittest.TestCase):
    def setUp(self):
        self.children = Children()
        self.addCleanup(self.children.end)

    def listener(self, port):
        """A child listening on 127.0.0.1:port, once it listens."""
        child = self.children.start(LISTEN, str(port))
        self.assertEqual(child.stdout.readline().strip(), "ready")
        return child

    def test_the_servers_own_process(self):
        port = free_port()
        self.assertEqual(owners.port_owner(port, self.listener(port).pid), ("owned", None))

    def test_a_descendant_of_the_servers_process(self):
        port = free_port()
        parent = self.children.start(PARENT, str(port), LISTEN)
        self.assertEqual(parent.stdout.readline().strip(), "ready")
        self.assertEqual(owners.port_owner(port, parent.pid), ("owned", None))

    def test_another_program(self):
        idle = self.children.start("import time; time.sleep(120)")
        with listening(socket.AF_INET, "127.0.0.1") as squatter:
            port = squatter.getsockname()[1]
            state, problem = owners.port_owner(port, idle.pid)
        self.assertEqual(state, "foreign")
        self.assertEqual(
            problem,
            f"port {port} is held by another program (pid {os.getpid()}, uid {os.getuid()}),"
            f" not by the server's process (pid {idle.pid})",
        )

    def test_another_program_on_ipv6_beside_the_server(self):
        # The server on 127.0.0.1, another program on [::] (IPv6 only): a connection may land on either.
        port = free_port()
        with listening(socket.AF_INET6, "::", port):
            state, problem = owners.port_owner(port, self.listener(port).pid)
        self.assertEqual(state, "mixed")
        self.assertIn(f"port {port} is held by another program (pid {os.getpid()}", problem)

    def test_nothing(self):
        idle = self.children.start("import time; time.sleep(120)")
        port = free_port()
        self.assertEqual(owners.port_owner(port, idle.pid), ("none", f"nothing listens on port {port}"))


class ProcessTest(unittest.TestCase):
    def test_how_a_process_ended(self):
        children = Children()
        self.addCleanup(children.end)
        proc = children.start("import sys; sys.exit(3)")
        proc.wait()
        spawner = type("Spawner", (), {"proc": proc})()
        self.assertEqual(owners.exited(spawner, proc.pid), "exited with code 3")
        running = children.start("import time; time.sleep(120)")
        self.assertIsNone(owners.exited(object(), running.pid))
        self.assertIsNotNone(owners.start_time(running.pid))
        self.assertEqual(owners.exited(object(), proc.pid), "is gone")


if __name__ == "__main__":
    unittest.main()
