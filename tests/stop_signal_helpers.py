"""Code the stop-signal tests run in other processes (importable by name, as spawn requires), and /proc
helpers to see which processes are alive.

`python stop_signal_helpers.py loader` is a main process with its own stop-signal flag (as the training loop
has) reading a DataLoader with 2 workers: it prints "handlers" once its handlers are installed, "reading" after
the first batch, and at the end a JSON line with the number of batches and the signals it received."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from avcli.stop_signals import STOP_SIGNALS, leave_stop_signals_to_parent


def idle_helper(ready, delay: float) -> None:
    """A helper process: `delay` seconds before it takes its stance on the stop signals (they are blocked
    meanwhile), then ready, then idle."""
    time.sleep(delay)
    leave_stop_signals_to_parent()
    ready.set()
    time.sleep(120)


def orphan_parent() -> None:
    """Starts a helper, prints its pid and dies without ending it."""
    from avcli.stop_signals import helper_context

    ctx = helper_context("spawn")
    ready = ctx.Event()
    helper = ctx.Process(target=idle_helper, args=(ready, 0.0), daemon=True)
    helper.start()
    ready.wait(60)
    print(helper.pid, flush=True)
    os._exit(0)


def exiting_parent() -> None:
    """Starts a helper, prints its pid and exits as usual without ending it: multiprocessing's clean-up at exit
    must end it (it terminates daemon children, then waits for them)."""
    from avcli.stop_signals import helper_context

    ctx = helper_context("fork")
    ready = ctx.Event()
    helper = ctx.Process(target=idle_helper, args=(ready, 0.0), daemon=True)
    helper.start()
    ready.wait(60)
    print(helper.pid, flush=True)
    sys.exit(0)


class _SlowItems:
    def __len__(self) -> int:
        return 60

    def __getitem__(self, i: int) -> int:
        time.sleep(0.02)
        return i


def loader_main() -> None:
    from avcli.stop_signals import data_loader

    received: list[str] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: received.append(signal.Signals(signum).name))
    print("handlers", flush=True)
    time.sleep(0.3)  # the test is signalling the group already: the workers start under fire
    loader = data_loader(_SlowItems(), batch_size=2, num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(2):
        for batch in loader:
            if not seen:
                print("reading", flush=True)
            seen.extend(batch.tolist())
    workers = [w.pid for w in loader._iterator._workers]
    del loader  # the workers are shut down here
    # the test may still be signalling the group (for a fixed time, however fast this ran), and finalisation puts
    # the default handlers back, under which a late SIGTERM would end this process by the signal: hold them back
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    print(json.dumps({"items": len(seen), "distinct": len(set(seen)), "received": sorted(set(received)),
                      "workers": workers}), flush=True)


# ---------------------------------------------------------------------------------------------- /proc


def children(pid: int) -> list[int]:
    """The live (not zombie) children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def wait_gone(pids, timeout: float = 15.0) -> list[int]:
    """The pids still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


if __name__ == "__main__":
    {"loader": loader_main, "orphan": orphan_parent, "exiting": exiting_parent}[sys.argv[1]]()
