"""What one durable write costs on this disk, by shape (issue 21, decision 0011).

Four shapes, 1,500 writes each into a preallocated file (the first 200 not
counted), p50 and p99, twice:
- a SQLite WAL frame: 24 + 4,096 bytes at 32 + n * 4,120 (straddles two
  4 KiB blocks), then fdatasync — what a CometBFT vote's commit does;
- an aligned 4 KiB block, then fdatasync;
- an aligned 4 KiB block through O_DSYNC (the floor's write);
- a frame of a 512-byte page (536 bytes), then fdatasync.

Run: python3 bench/probes/wal_shape.py [DIR] (default /tmp; use the
database's disk).
"""

import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp"

import os, time, statistics
def run(name, size, stride, base, flags, sync, n=1500):
    path = f"{DIR}/walprobe.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o600)
    os.posix_fallocate(fd, 0, 64 << 20)
    os.write(fd, b"\0" * (8 << 20)); os.fsync(fd)
    buf = os.urandom(size)
    lat = []
    for i in range(n):
        off = base + (i % 1000) * stride
        t = time.perf_counter_ns()
        os.pwrite(fd, buf, off)
        if sync: os.fdatasync(fd)
        lat.append((time.perf_counter_ns() - t) / 1000)
    os.close(fd); os.unlink(path)
    lat = lat[200:]
    lat.sort()
    print(f"{name:55s} p50 {lat[len(lat)//2]:6.0f} µs  p99 {lat[int(len(lat)*0.99)]:6.0f} µs")
for r in range(2):
    run("WAL-like frame 4120 B at 32+n*4120, fdatasync", 4120, 4120, 32, 0, True)
    run("aligned 4096 B, fdatasync", 4096, 4096, 0, 0, True)
    run("aligned 4096 B, O_DSYNC", 4096, 4096, 0, os.O_DSYNC, False)
    run("frame 536 B (512-byte page) at 32+n*536, fdatasync", 536, 536, 32, 0, True)
