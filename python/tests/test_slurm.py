import asyncio
import re
import unittest

from hubctl_hub import slurm
from hubctl_hub.slurm import pending_reason, progress_with_reason


class Job:
    """As batchspawner's SlurmSpawner holds a job: its id, partition, and squeue's last answer."""

    req_partition = "students"

    def __init__(self, statuses):
        self.job_id = "42"
        self.statuses = statuses
        self.job_status = statuses.pop(0)

    def state_ispending(self):
        return re.search(r"^(?:PENDING|CONFIGURING)", self.job_status)

    def state_isrunning(self):
        return re.search(r"^(?:RUNNING|COMPLETING)", self.job_status)


async def messages(job):
    said = []
    async for event in progress_with_reason(job):
        said.append(event["message"])
        if job.statuses:
            job.job_status = job.statuses.pop(0)
    return said


class PendingReasonTest(unittest.TestCase):
    def test_reason_between_state_and_node(self):
        self.assertEqual(pending_reason("PENDING Resources n/a"), "Resources")
        self.assertEqual(pending_reason("RUNNING None node1"), "None")
        self.assertEqual(pending_reason(""), "")

    def setUp(self):
        self.addCleanup(setattr, slurm, "POLL_SECONDS", slurm.POLL_SECONDS)
        slurm.POLL_SECONDS = 0

    def test_spawn_page_says_each_reason_once_then_that_the_job_runs(self):
        job = Job(["PENDING Priority n/a", "PENDING Resources n/a", "RUNNING None node1"])
        said = asyncio.run(messages(job))
        self.assertEqual(
            said,
            [
                "Your server's Slurm job 42 waits in the queue of partition students: Slurm says Priority"
                " (jobs with a higher priority are ahead of it)",
                "Your server's Slurm job 42 waits in the queue of partition students: Slurm says Resources"
                " (the nodes are busy; it starts when enough CPUs and memory are free)",
                "Slurm job 42 runs; waiting for the server to answer",
            ],
        )


class Spawner:
    """batchspawner's start() as it ends when the hub cancels it mid-squeue: the job's id forgotten."""

    def __init__(self):
        self.job_id = ""
        self.cancelled = []

    async def submit_batch_script(self):
        self.job_id = "7"
        return self.job_id

    async def start(self):
        await self.submit_batch_script()
        self.job_id = ""
        raise RuntimeError("The Jupyter batch job has disappeared")

    async def cancel_batch_job(self):
        self.cancelled.append(self.job_id)


class CancelUnstartedTest(unittest.TestCase):
    def test_a_failed_start_cancels_the_job_it_submitted(self):
        cls = type("S", (Spawner,), {})
        slurm.cancel_unstarted_jobs(cls)
        spawner = cls()
        with self.assertRaises(RuntimeError):
            asyncio.run(spawner.start())
        self.assertEqual(spawner.cancelled, ["7"])
        self.assertEqual(spawner.job_id, "")
