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
