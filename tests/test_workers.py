"""Worker processes (kdtrack.spine.workers): SIGTERM interrupts a task, and ends an idle worker at once."""
import signal
import time

from kdtrack.spine.workers import fork_server, interruptible, worker_pool


def sigterm_action() -> str:
    return repr(signal.getsignal(signal.SIGTERM))


def wait_then_report(seconds: float) -> str:
    time.sleep(seconds)
    return "finished"


def test_sigterm_interrupts_a_task_and_kills_an_idle_worker_outright():
    """A Python handler cannot end an idle worker reliably: it waits in the task queue's semaphore, which a
    SIGTERM handed to another of its threads (or caught in a finaliser) does not interrupt, and the pool's
    terminate then waited for ever (a CI run hung there). So the handler is installed for a task only."""
    pool = worker_pool(fork_server([__name__], logging=False), 2, tracked=False)
    try:
        inside = pool.apply(interruptible, (sigterm_action,))
        outside = pool.apply(sigterm_action)
        busy = pool.apply_async(interruptible, (wait_then_report, 60))
        time.sleep(1)
        workers = list(pool._pool)
    finally:
        pool.terminate()  # stops the pool's own threads first, so that nothing else joins the workers meanwhile
        pool.join()
    assert busy.ready() is False
    assert "_interrupt" in inside
    assert outside == repr(signal.SIG_DFL)
    # the busy one: its task's KeyboardInterrupt, as a command's Ctrl-C; the idle one: killed by the signal,
    # or ended cleanly by the pool's end-of-tasks sentinel if that reached it first
    idle, busy_worker = sorted(workers, key=lambda worker: worker.exitcode == 130)
    assert busy_worker.exitcode == 130
    assert idle.exitcode in (0, -signal.SIGTERM)
