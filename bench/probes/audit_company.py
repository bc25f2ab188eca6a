"""What an append-only log beside it costs a durable write (issue 21).

The daemon's audit log is appended for every request and fdatasynced every
`[audit] flush_interval_ms`. This probe asks what that does to the writes
of the slashing database on the same disk, without the daemon: one
process does the floor's write (an aligned 4 KiB block through O_DSYNC
into a preallocated file, 200 µs apart) while a second process (a
process, so that Python's lock does not stand in for the disk) plays the
audit log — a 300-byte record every 400 µs, about one per vote — synced
every 5 ms, every 50 ms, or never.

The variants take turns in blocks of 300 writes, 12 rounds of turns, and
each line is p50, mean and p99 over all its blocks: this VM's disk
wanders between quarter seconds (a p50 of 138 µs, then 213), and a probe
that ran each variant once, in sequence, said "+55 µs" one minute and
"nothing" the next.

Run: python3 bench/probes/audit_company.py [DIR] [LOG_DIR]
(DIR: the database's disk, default /tmp; LOG_DIR: where the log goes,
default DIR — give another device to see the difference it makes).
"""

import multiprocessing as mp
import os
import statistics
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
LOG_DIR = sys.argv[2] if len(sys.argv) > 2 else DIR
WRITES = 3000


def log_beside(stop, ready, flush_every, append):
    path = os.path.join(LOG_DIR, "audit_company.log")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    record = b"x" * 299 + b"\n"
    last = time.monotonic()
    ready.set()
    while not stop.is_set():
        if append:
            os.write(fd, record)
        now = time.monotonic()
        if flush_every and now - last >= flush_every:
            os.fdatasync(fd)
            last = now
        time.sleep(0.0004)
    os.close(fd)
    os.unlink(path)


BLOCK = 300
TURNS = 12


def block_of_writes(companion):
    """BLOCK writes with `companion` beside (None: nothing beside)."""
    path = os.path.join(DIR, "audit_company.floor")
    with open(path, "wb") as f:
        f.write(b"\0" * 256 * 4096)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_WRONLY | os.O_DSYNC)
    stop, ready = mp.Event(), mp.Event()
    beside = None
    if companion is not None:
        beside = mp.Process(target=log_beside, args=(stop, ready) + companion)
        beside.start()
        ready.wait()
    block = b"\xa5" * 4096
    times = []
    for i in range(BLOCK):
        started = time.perf_counter_ns()
        os.pwrite(fd, block, (i % 256) * 4096)
        times.append((time.perf_counter_ns() - started) / 1000)
        time.sleep(0.0002)
    stop.set()
    if beside is not None:
        beside.join()
    os.close(fd)
    os.unlink(path)
    return times


VARIANTS = [
    ("alone", None),
    ("a process idling beside (no log)", (None, False)),
    ("log appended beside, never synced", (None, True)),
    ("log appended beside, synced every 5 ms", (0.005, True)),
    ("log appended beside, synced every 50 ms", (0.05, True)),
]

if __name__ == "__main__":
    print(f"O_DSYNC 4 KiB writes on {DIR}, log in {LOG_DIR}: {TURNS} turns of {BLOCK} writes each")
    times = {label: [] for label, _ in VARIANTS}
    for turn in range(TURNS):
        for label, companion in VARIANTS:
            times[label].extend(block_of_writes(companion))
    for label, _ in VARIANTS:
        t = sorted(times[label])
        print(
            f"{label:44s} p50 {t[len(t) // 2]:5.0f}  mean {statistics.mean(t):5.0f}"
            f"  p99 {t[int(len(t) * 0.99)]:5.0f} µs",
            flush=True,
        )
