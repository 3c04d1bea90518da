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
    pool = worker_pool(fork_server([__name__], logging=False), 1, tracked=False)
    try:
        inside = pool.apply(interruptible, (sigterm_action,))
        outside = pool.apply(sigterm_action)
        busy = pool.apply_async(interruptible, (wait_then_report, 60))
        time.sleep(1)
        [worker] = pool._pool
        worker.terminate()
        worker.join(timeout=10)
        assert busy.ready() is False
    finally:
        pool.terminate()
        pool.join()
    assert "_interrupt" in inside
    assert outside == repr(signal.SIG_DFL)
    assert worker.exitcode == 130  # the task's KeyboardInterrupt, as a command's Ctrl-C
