"""Session capacity and eviction (tigerbeetle-wire.md §4.8, §4.9): 64 clients (separate client
objects, one thread each) register concurrently and each does a small create; all but the first
then make one more call, so the first client's session is the least recently used. A 65th client
registers, which evicts that session: the first client's next call fails with the client's
ClientEvictedError (no hang) and later calls with ClientClosedError, while the other 64 keep
working.

    python3 sessions.py ADDRESS
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import tigerbeetle as tb

from tbcheck import account, address, eq, ids, log, names, ok, watchdog

SESSIONS = 64
STEP_TIMEOUT = 30.0

watchdog(90)
addr = address()
clients = [None] * (SESSIONS + 1)
pool = ThreadPoolExecutor(max_workers=SESSIONS + 1)


def on_all(indices, fn, what):
    """Runs fn(i) for every i at once, each in its own thread; returns {i: result}. A call that
    does not complete within STEP_TIMEOUT fails the script (the watchdog then ends it)."""
    barrier = threading.Barrier(len(indices))

    def run(i):
        barrier.wait(timeout=STEP_TIMEOUT)
        return fn(i)

    futures = {i: pool.submit(run, i) for i in indices}
    deadline = time.monotonic() + STEP_TIMEOUT
    results = {}
    for i, future in futures.items():
        try:
            results[i] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise AssertionError(f"{what}: client {i} got no answer in {STEP_TIMEOUT} s")
    return results


def register_and_create(i):
    clients[i] = tb.ClientSync(cluster_id=0, replica_addresses=addr)
    return names(clients[i].create_accounts([account(1000 + i)]))


def lookup_own(i):
    return ids(clients[i].lookup_accounts([1000 + i]))


def outcome(i):
    """What a lookup of client i gives: its ids, or the name of the exception it raised."""
    try:
        return lookup_own(i)
    except Exception as error:  # noqa: BLE001 - the type is what is checked
        return type(error).__name__


started = time.monotonic()
results = on_all(range(SESSIONS), register_and_create, "64 clients register and create")
eq(results, {i: ["CREATED"] for i in range(SESSIONS)}, "creates of the 64 clients")
log(f"64 sessions in {time.monotonic() - started:.2f} s")

# Every client but client 0 makes one more call: client 0's session is now the LRU.
results = on_all(range(1, SESSIONS), lookup_own, "63 clients look up")
eq(results, {i: [1000 + i] for i in range(1, SESSIONS)}, "lookups of clients 1..63")

# The 65th client registers: client 0 is evicted.
results = on_all([SESSIONS], register_and_create, "the 65th client registers")
eq(results, {SESSIONS: ["CREATED"]}, "create of the 65th client")

results = on_all([0], outcome, "the evicted client's next call")
eq(results, {0: "ClientEvictedError"}, "the evicted client's next call")

# The 64 sessions left all work; client 0 stays evicted (it refuses further calls).
results = on_all(range(1, SESSIONS + 1), outcome, "the 64 remaining clients")
eq(results, {i: [1000 + i] for i in range(1, SESSIONS + 1)}, "calls of the remaining clients")
results = on_all([0], outcome, "the evicted client's second call")
eq(results, {0: "ClientClosedError"}, "the evicted client's second call")
eq(ids(clients[1].lookup_accounts([1000 + i for i in range(SESSIONS + 1)])),
   [1000 + i for i in range(SESSIONS + 1)], "every client's account is stored")

on_all(range(SESSIONS + 1), lambda i: clients[i].close(), "close")
pool.shutdown()
ok("sessions")
