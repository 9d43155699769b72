#!/usr/bin/env python3
"""The disk's floor for group commit: how long `fdatasync` takes after a small or a 1 MiB write
into a preallocated, already written file (as the journal's segments are), one writer or several
at once, and with the write made through a shared mapping instead of `pwrite`.

    python3 bench/scripts/fsync_probe.py [DIRECTORY]

The file (1 GiB) is written in DIRECTORY (default: target/) and removed afterwards."""
import mmap
import os
import sys
import threading
import time

SIZE = 1 << 30
directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "target")
path = os.path.join(directory, "fsync-probe")


def summary(latencies):
    latencies = sorted(latencies)
    mean = sum(latencies) / len(latencies)
    return (f"mean {1e6 * mean:5.0f} µs, p50 {1e6 * latencies[len(latencies) // 2]:5.0f}, "
            f"p99 {1e6 * latencies[int(len(latencies) * 0.99)]:5.0f}")


def timed_syncs(fd, write, size, count, offsets):
    latencies = []
    record = b"x" * size
    for _ in range(count):
        offset = offsets()
        write(record, offset)
        started = time.perf_counter()
        os.fdatasync(fd)
        latencies.append(time.perf_counter() - started)
    return latencies


def main():
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, SIZE)
        zeros = b"\0" * (64 << 20)
        for offset in range(0, SIZE, len(zeros)):
            os.pwrite(fd, zeros, offset)
        os.fsync(fd)
        mapping = mmap.mmap(fd, SIZE)
        lock = threading.Lock()
        cursor = [0]

        def next_offset(stride):
            def take():
                with lock:
                    offset = cursor[0]
                    cursor[0] += stride
                return offset
            return take

        def pwrite(record, offset):
            os.pwrite(fd, record, offset)

        def store(record, offset):
            mapping[offset:offset + len(record)] = record

        for name, write, size, count in (
            ("pwrite 600 B", pwrite, 600, 2000),
            ("mapped store 600 B", store, 600, 2000),
            ("pwrite 1 MiB", pwrite, 1 << 20, 300),
            ("mapped store 1 MiB", store, 1 << 20, 300),
        ):
            cursor[0] = 0
            stride = max(size, 4096)
            print(f"{name:<20} one writer: "
                  f"{summary(timed_syncs(fd, write, size, count, next_offset(stride)))}")
        for writers in (2, 3, 4):
            cursor[0] = 0
            results = [[] for _ in range(writers)]

            def run(index):
                results[index] = timed_syncs(fd, pwrite, 600, 1000, next_offset(4096))

            threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            latencies = [latency for result in results for latency in result]
            print(f"pwrite 600 B, {writers} writers: {len(latencies) / elapsed:5.0f} fdatasync/s, "
                  f"{summary(latencies)}")
        mapping.close()
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
