"""The spawn page of a Slurm job (--spawner slurm): what the scheduler says while the job waits.

batchspawner's own progress says only "Pending in queue..." until the job runs. The config asks
squeue for the job's reason as well (QUERY: state, reason, node; batchspawner reads the state
from the start and the node from the end of that line), and show_pending_reason() makes the spawn
page say the job's id, the partition and Slurm's reason (Resources, Priority, ...), each time it
changes. batchspawner is imported only by the config of a Slurm hub, not here.
"""
import asyncio

# How often the spawn page looks at the job's state (batchspawner's start() polls squeue every 0.5 s).
POLL_SECONDS = 1

# squeue's answer for one job: its long-form state, the reason it waits (None once running), its node.
QUERY = "squeue -h -j {job_id} -o '%T %r %B'"

# What the reasons a student most often sees mean, in their words.
REASONS = {
    "Resources": "the nodes are busy; it starts when enough CPUs and memory are free",
    "Priority": "jobs with a higher priority are ahead of it",
    "ReqNodeNotAvail": "the nodes it may run on are down, drained or reserved",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "JobHeldAdmin": "an administrator holds it",
    "JobHeldUser": "it is held",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as you may",
    "AssocMaxJobsLimit": "your account already runs as many jobs as it may",
}


def pending_reason(job_status):
    """Slurm's reason in a QUERY line of a pending job ("PENDING Resources n/a"), or ""."""
    words = (job_status or "").split()
    return " ".join(words[1:-1]) if len(words) >= 3 else ""


def pending_message(spawner):
    reason = pending_reason(spawner.job_status)
    where = f"Your server's Slurm job {spawner.job_id} waits in the queue of partition {spawner.req_partition}"
    if not reason or reason == "None":
        return where
    meaning = REASONS.get(reason.split(",")[0])
    return f"{where}: Slurm says {reason}" + (f" ({meaning})" if meaning else "")


async def progress_with_reason(self):
    """The spawn page's progress: the job's pending reason each time it changes, then that it runs."""
    said = None
    while True:
        if self.state_ispending():
            message = pending_message(self)
        elif self.state_isrunning():
            yield {"progress": 50, "message": f"Slurm job {self.job_id} runs; waiting for the server to answer"}
            return
        elif not self.job_id:
            message = "Submitting the server's job to Slurm"
        else:
            message = f"Waiting for Slurm to say the state of job {self.job_id}"
        if message != said:
            said = message
            yield {"progress": 10, "message": message}
        await asyncio.sleep(POLL_SECONDS)


def show_pending_reason(spawner_class):
    """The spawn page of `spawner_class` (batchspawner's SlurmSpawner) says why its job waits."""
    spawner_class.progress = progress_with_reason


def cancel_unstarted_jobs(spawner_class):
    """A start of `spawner_class` that does not succeed cancels the job it submitted.

    The hub cancels a start at its timeout. batchspawner's run_command catches that cancellation
    while its squeue runs (a bare except), kills squeue, and start() then takes the job for gone:
    it forgets the job's id, so the hub's stop has no job to cancel, and a pending job stayed in the
    queue. Here the id of the job submitted is kept, and scancel'd when start() ends without a server.
    """
    start, submit = spawner_class.start, spawner_class.submit_batch_script

    async def submit_batch_script(self):
        self._hubctl_submitted = await submit(self)
        return self._hubctl_submitted

    async def start_or_cancel(self):
        self._hubctl_submitted = ""
        try:
            return await start(self)
        except BaseException:
            job_id = self._hubctl_submitted
            if job_id:
                kept, self.job_id = self.job_id, job_id
                try:
                    await self.cancel_batch_job()
                except Exception as e:
                    self.log.warning("Cancelling job %s of a start that failed: %s", job_id, e)
                finally:
                    self.job_id = kept
            raise

    spawner_class.submit_batch_script = submit_batch_script
    spawner_class.start = start_or_cancel
