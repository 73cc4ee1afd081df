import subprocess
import sys
import unittest

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner

from hubctl_hub.limits import oom_adjusted

# A child that prints its own oom_score_adj and its children's (a kernel started by the server).
SHOW = (
    "import subprocess, sys\n"
    "print(open('/proc/self/oom_score_adj').read().strip())\n"
    "print(subprocess.run(['cat', '/proc/self/oom_score_adj'], capture_output=True, text=True).stdout.strip())"
)


class OomAdjustedTest(unittest.TestCase):
    def test_servers_and_what_they_start_begin_at_the_given_score(self):
        cls = oom_adjusted(SimpleLocalProcessSpawner, 500)
        self.assertTrue(issubclass(cls, SimpleLocalProcessSpawner))
        self.assertEqual(cls._hubctl_base, "jupyterhub.spawner.SimpleLocalProcessSpawner")
        spawner = cls()
        # SimpleLocalProcessSpawner's own preexec changes to the home: given one that exists.
        spawner.home_dir = "/"
        out = subprocess.run(
            [sys.executable, "-c", SHOW],
            preexec_fn=spawner.make_preexec_fn("nobody"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        self.assertEqual(out, ["500", "500"])

    def test_the_class_may_be_given_by_name(self):
        cls = oom_adjusted("jupyterhub.spawner.LocalProcessSpawner", 300)
        self.assertTrue(issubclass(cls, LocalProcessSpawner))
        self.assertEqual(cls._hubctl_base, "jupyterhub.spawner.LocalProcessSpawner")


if __name__ == "__main__":
    unittest.main()
