"""A client that lives through a server restart (tigerbeetle-wire.md §4.9, §4.10).

    python3 restart.py ADDRESS

1. Creates accounts, transfers, a pending transfer and a retired id (acknowledged).
2. Starts a loop thread that creates one transfer per call, without pause, with the same client.
3. Prints `READY` and waits for a line `go` on stdin. Meanwhile the test harness stops the server
   (SIGKILL or SIGTERM) while calls are in flight, restarts it on the same address with the same
   data directory, and then writes `go`. The client retries on its own while the server is down.
4. Lets the loop make 20 more calls, stops it and checks: every call of the loop got `created`
   (a request executed before the stop is answered from the stored reply, never executed twice,
   and the session survived: no eviction), timestamps kept increasing across the restart, and
   everything acknowledged before the restart is still there, unchanged.
"""

import sys
import threading
import time

import tigerbeetle as tb

from tbcheck import (TF, account, address, balances, check, created, eq, ids, log, names, ok,
                     timed_create, transfer, watchdog)

AFTER_GO = 20

watchdog(75)

with tb.ClientSync(cluster_id=0, replica_addresses=address()) as c:
    created(timed_create(c.create_accounts, [account(1), account(2)]), "accounts")
    before = [transfer(100 + i, 1, 2, 10) for i in range(20)]
    r = []
    for i in range(0, 20, 5):
        r += timed_create(c.create_transfers, before[i:i + 5])
    created(r, "transfers before the restart")
    stamps_before = [x.timestamp for x in r]
    r = timed_create(c.create_transfers, [
        transfer(200, 1, 2, 30, flags=TF.PENDING),
        transfer(201, 1, 99, 1),  # credit account not found: retires id 201
    ])
    eq(names(r), ["CREATED", "CREDIT_ACCOUNT_NOT_FOUND"], "pending and failing transfer")
    eq(balances(c, 1), (30, 200, 0, 0), "account 1 before the loop")

    loop_results = []  # (id, status name, timestamp, wall time of the answer)
    loop_errors = []
    stop = threading.Event()

    def loop():
        k = 0
        try:
            while not stop.is_set():
                id = 10_000 + k
                r = c.create_transfers([transfer(id, 1, 2, 1)])
                eq(len(r), 1, f"results of loop call {k}")
                loop_results.append((id, r[0].status.name, r[0].timestamp, time.monotonic()))
                k += 1
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            loop_errors.append(repr(error))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    while len(loop_results) < 5:
        check(not loop_errors, f"loop failed: {loop_errors}")
        time.sleep(0.005)
    log("READY")
    line = sys.stdin.readline()
    eq(line.strip(), "go", "line from the harness")
    at_go = len(loop_results)
    go_time = time.monotonic()
    while len(loop_results) < at_go + AFTER_GO:
        check(not loop_errors, f"loop failed: {loop_errors}")
        check(thread.is_alive(), "the loop stopped")
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=30)
    check(not thread.is_alive(), "the loop did not stop")
    check(not loop_errors, f"loop failed: {loop_errors}")
    n = len(loop_results)
    stalled = max(b[3] - a[3] for a, b in zip(loop_results, loop_results[1:]))
    log(f"loop: {at_go} calls before go, {n - at_go} after; longest gap {stalled:.2f} s; "
        f"first call after go answered {loop_results[at_go][3] - go_time:.2f} s after it")

    eq([x[1] for x in loop_results], ["CREATED"] * n, "every loop call created its transfer")
    loop_stamps = [x[2] for x in loop_results]
    check(all(a < b for a, b in zip(loop_stamps, loop_stamps[1:])),
          "timestamps increase across the restart")
    check(loop_stamps[0] > stamps_before[-1], "loop timestamps follow the earlier ones")

    # Everything acknowledged before the restart is still there.
    found = c.lookup_transfers([t.id for t in before])
    eq([(t.id, t.amount, t.timestamp) for t in found],
       [(t.id, t.amount, s) for t, s in zip(before, stamps_before)], "transfers before the loop")
    loop_ids = [x[0] for x in loop_results]
    found = c.lookup_transfers(loop_ids)
    eq([(t.id, t.timestamp) for t in found], [(x[0], x[2]) for x in loop_results],
       "transfers of the loop")
    eq(balances(c, 1), (30, 200 + n, 0, 0), "account 1 after the loop")
    eq(balances(c, 2), (0, 0, 30, 200 + n), "account 2 after the loop")

    # State other than balances survived too: the pending transfer, the retired id, and the
    # objects that idempotent resubmissions are checked against.
    r = timed_create(c.create_transfers, [
        before[0],
        transfer(201, 1, 2, 1),
        transfer(202, 0, 0, tb.AMOUNT_MAX, ledger=0, code=0, flags=TF.POST_PENDING_TRANSFER,
                 pending_id=200),
        transfer(10_000, 1, 2, 1),
    ])
    eq(names(r), ["EXISTS", "ID_ALREADY_FAILED", "CREATED", "EXISTS"], "after the restart")
    eq(r[0].timestamp, stamps_before[0], "exists carries the original timestamp")
    eq(r[3].timestamp, loop_stamps[0], "exists carries the loop's first timestamp")
    eq(balances(c, 1), (0, 230 + n, 0, 0), "account 1 at the end")
    eq(ids(c.lookup_accounts([1, 2])), [1, 2], "accounts")

ok("restart")
