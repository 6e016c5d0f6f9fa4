"""The stop signals (SIGINT, SIGTERM, SIGUSR1) are the main process's; helper processes leave them to it.

A stop signal often reaches every process of a job at once: Ctrl-C signals the terminal's foreground process
group, `timeout` and `kill -- -PGID` signal a process group, torchrun signals each rank's process group when it
is itself signalled, and Slurm (`scancel`, `--signal=TERM@120`) signals every process of the job step. The main
process turns the signal into a clean stop (a checkpoint and exit code 4 in training, the committed rows kept in
ingest), but only if its helpers survive it: a DataLoader worker killed by the SIGTERM meant for the job turns
the clean stop into a crash ("DataLoader worker (pid N) is killed by signal: Terminated").

So helper processes (DataLoader workers through `data_loader`, ingest's pool through `helper_context`) start
with the stop signals blocked, and their first act, `leave_stop_signals_to_parent` (the worker_init_fn or the
pool initializer), is to ignore them (which also drops any that arrived meanwhile): blocking from before the
fork until then closes the race in which a signal arriving between the fork and the worker's set-up would still
kill it. The parent ends its helpers as usual — torch's DataLoader by a message when its iterator is deleted or
at exit, Pool by `terminate()` — except that `terminate()`, which would send the SIGTERM they now ignore, kills
them; and a helper whose parent is gone ends by itself. (POSIX only, as the rest of avcli's process handling.)

In the main process, training reads the signals as a flag at step boundaries (avcli/train/loop.py); work that
stops by exception instead (ingest) uses `stop_signals_raise`: each stop signal raises `StopSignal`, a
KeyboardInterrupt, except inside a `held()` section (a catalog commit), which finishes first.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.context as mp_context
import os
import signal
import threading
import time
from contextlib import contextmanager
from multiprocessing import popen_fork, popen_forkserver, popen_spawn_posix
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """The stop signals held back in this thread, and in the processes and threads it starts meanwhile (they
    inherit the mask), until the block ends; one that arrived meanwhile is delivered then."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_stop_signals_to_parent(*_args) -> None:
    """In a helper process, before its work (its stop signals still blocked since the fork): ignore them, and end
    when the parent is gone. Takes and ignores any arguments (a worker id)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="avcli-orphan", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """An orphan (its parent killed, say) would otherwise outlive the job: nothing it ignores can end it."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


# ------------------------------------------------------------------------------------------ helper processes


class _KillingPopen:
    """A helper ignores SIGTERM, so ending it means SIGKILL: for `Process.terminate()` (torch's DataLoader and
    Pool end stuck workers with it) and for multiprocessing's clean-up at exit, which terminates its daemon
    children and then waits for them."""

    def terminate(self) -> None:
        self.kill()


class _ForkPopen(_KillingPopen, popen_fork.Popen):
    pass


class _SpawnPopen(_KillingPopen, popen_spawn_posix.Popen):
    pass


class _ForkServerPopen(_KillingPopen, popen_forkserver.Popen):
    pass


class _BlockedStart:
    """A helper: started with the stop signals blocked (see the module's docstring)."""

    def start(self) -> None:
        if self._start_method in ("spawn", "forkserver"):
            # the resource tracker, on its first start, *unblocks* SIGINT and SIGTERM in the starting thread
            # (Python 3.11): have it started before the block, not inside it
            from multiprocessing import resource_tracker

            resource_tracker.ensure_running()
        with stop_signals_blocked():
            super().start()


class _ForkProcess(_BlockedStart, mp_context.ForkProcess):
    _Popen = staticmethod(_ForkPopen)


class _SpawnProcess(_BlockedStart, mp_context.SpawnProcess):
    _Popen = staticmethod(_SpawnPopen)


class _ForkServerProcess(_BlockedStart, mp_context.ForkServerProcess):
    _Popen = staticmethod(_ForkServerPopen)


class _ForkContext(mp_context.ForkContext):
    Process = _ForkProcess


class _SpawnContext(mp_context.SpawnContext):
    Process = _SpawnProcess


class _ForkServerContext(mp_context.ForkServerContext):
    Process = _ForkServerProcess


_CONTEXTS = {"fork": _ForkContext, "spawn": _SpawnContext, "forkserver": _ForkServerContext}


def helper_context(method: str | None = None) -> mp_context.BaseContext:
    """A multiprocessing context (`method`, or the default start method) whose processes start with the stop
    signals blocked; give their target `leave_stop_signals_to_parent` as its initializer."""
    # the default is the first method listed (asking get_start_method would fix it for the whole process)
    method = method or multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return _CONTEXTS[method]()


def _init_loader_worker(user_init: Callable[[int], None] | None, worker_id: int) -> None:
    leave_stop_signals_to_parent()
    if user_init is not None:
        user_init(worker_id)


def data_loader(dataset, *, num_workers: int = 0, worker_init_fn: Callable[[int], None] | None = None, **kwargs):
    """torch's DataLoader, whose workers (if any) leave the stop signals to this process."""
    from torch.utils.data import DataLoader

    if num_workers > 0:
        context = kwargs.get("multiprocessing_context")
        if context is None or isinstance(context, str):
            kwargs["multiprocessing_context"] = helper_context(context)
        worker_init_fn = functools.partial(_init_loader_worker, worker_init_fn)
    return DataLoader(dataset, num_workers=num_workers, worker_init_fn=worker_init_fn, **kwargs)


# ------------------------------------------------------------------------------------------ the main process


class StopSignal(KeyboardInterrupt):
    """A stop signal, raised the way Ctrl-C raises KeyboardInterrupt; `signal` is its name."""

    def __init__(self, signum: int):
        self.signal = signal.Signals(signum).name
        super().__init__(self.signal)


class _Raising:
    """The handler `stop_signals_raise` installs, and its `held()` sections."""

    def __init__(self):
        self.held_depth = 0
        self.pending: int | None = None
        self.stopping = False  # raised once: later signals change nothing, the stop is under way

    def handler(self, signum, frame) -> None:
        if self.held_depth or self.stopping:
            self.pending = self.pending or signum
            return
        self._raise(signum)

    def _raise(self, signum: int) -> None:
        self.stopping = True
        raise StopSignal(signum)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A section no stop signal cuts short: one that arrives meanwhile is raised when it ends (unless the
        stop is under way already)."""
        self.held_depth += 1
        try:
            yield
        finally:
            self.held_depth -= 1
        if not self.held_depth and self.pending is not None and not self.stopping:
            signum, self.pending = self.pending, None
            self._raise(signum)


@contextmanager
def stop_signals_raise() -> Iterator[_Raising]:
    """In the main thread: SIGINT, SIGTERM and SIGUSR1 raise `StopSignal` (the previous handlers come back at
    the end). A signal ignored when the command started (`nohup`, a shell's background job) stays ignored; off
    the main thread nothing changes (Python's own SIGINT handler still raises KeyboardInterrupt)."""
    raising = _Raising()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, raising.handler)
    try:
        yield raising
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
