import json
import os
import shutil
import tempfile
import unittest

from jupyterhub.spawner import SimpleLocalProcessSpawner

from hubctl_hub.prespawn import PreSpawn
from hubctl_hub.shares import SharedLinks, share_names


class Log:
    def __init__(self):
        self.warnings = []

    def warning(self, *args):
        self.warnings.append(args[0] % args[1:])


class User:
    name = "ada"


class Spawner(SimpleLocalProcessSpawner):
    """A server run as this process's user, its home a folder of the test (no hub needed)."""

    def __init__(self, home):
        self._home = home
        self._log = Log()

    @property
    def home_dir(self):
        return self._home

    @property
    def log(self):
        return self._log

    @property
    def user(self):
        return User()


class SharedLinksTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.root = os.path.join(self.dir, "shared-root")
        self.record = os.path.join(self.dir, "shares.json")
        self.home = os.path.join(self.dir, "home")
        os.mkdir(self.root)
        os.mkdir(self.home)
        self.links = SharedLinks(self.record, self.root, "shared")
        self.spawner = Spawner(self.home)

    def tearDown(self):
        shutil.rmtree(self.dir)

    def share(self, *names):
        with open(self.record, "w") as f:
            json.dump({"version": 1, "shares": {name: {} for name in names}}, f)

    def entry(self, name):
        return os.path.join(self.home, "shared", name)

    async def test_places_a_link_per_share_and_places_it_again_once_deleted(self):
        self.share("data", "notes")
        await self.links(self.spawner)
        self.assertEqual(os.readlink(self.entry("data")), os.path.join(self.root, "data"))
        self.assertEqual(os.readlink(self.entry("notes")), os.path.join(self.root, "notes"))
        os.unlink(self.entry("data"))
        await self.links(self.spawner)
        self.assertEqual(os.readlink(self.entry("data")), os.path.join(self.root, "data"))
        self.assertEqual(self.spawner.log.warnings, [])

    async def test_leaves_the_users_own_file_and_removes_links_of_removed_shares(self):
        os.makedirs(os.path.join(self.home, "shared"))
        with open(self.entry("data"), "w") as f:
            f.write("mine")
        os.symlink("/elsewhere/notes", self.entry("notes"))
        os.symlink(os.path.join(self.root, "old"), self.entry("old"))
        self.share("data", "notes")
        await self.links(self.spawner)
        with open(self.entry("data")) as f:
            self.assertEqual(f.read(), "mine")
        self.assertEqual(os.readlink(self.entry("notes")), "/elsewhere/notes")
        self.assertFalse(os.path.lexists(self.entry("old")))

    async def test_no_shares_no_folder_and_a_bad_record_is_no_shares(self):
        await self.links(self.spawner)
        self.assertFalse(os.path.lexists(os.path.join(self.home, "shared")))
        with open(self.record, "w") as f:
            f.write("{not json")
        self.assertEqual(share_names(self.record), [])
        with open(self.record, "w") as f:
            json.dump({"shares": {"../etc": {}, "ok": {}, "Bad": {}}}, f)
        self.assertEqual(share_names(self.record), ["ok"])

    @unittest.skipUnless(os.getuid() == 0, "switching to another user needs root")
    async def test_acts_as_the_user_never_as_root_in_their_home(self):
        nobody = 65534
        os.chmod(self.dir, 0o755)
        os.chown(self.home, nobody, nobody)
        roots = os.path.join(self.dir, "roots")
        os.mkdir(roots, 0o700)
        # The user's own link, to a folder only root writes: the links must not land there.
        os.symlink(roots, os.path.join(self.home, "shared"))
        home = self.home

        class AsNobody(SharedLinks):
            def who(self, spawner):
                return home, nobody, nobody

        links = AsNobody(self.record, self.root, "shared")
        self.share("data")
        await links(self.spawner)
        self.assertEqual(os.listdir(roots), [])
        os.unlink(os.path.join(self.home, "shared"))
        await links(self.spawner)
        self.assertEqual(os.lstat(os.path.join(self.home, "shared")).st_uid, nobody)
        self.assertEqual(os.lstat(self.entry("data")).st_uid, nobody)

    async def test_a_missing_home_is_a_warning_not_a_failed_start(self):
        self.share("data")
        shutil.rmtree(self.home)
        hook = PreSpawn(lambda spawner: None, shares=self.links)
        await hook(self.spawner)
        self.assertEqual(len(self.spawner.log.warnings), 1)


if __name__ == "__main__":
    unittest.main()
