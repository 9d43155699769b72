"""Expiry of pending transfers (ledger.md §2.4): a pending transfer with timeout 1 s holds its
amount until its deadline (timestamp + 1 s), is released by the server's pulse shortly after it
(never before), and can then be neither posted nor voided; others are unaffected.

    python3 expiry.py ADDRESS
"""

import time

import tigerbeetle as tb

from tbcheck import (AF, TF, account, account_filter, address, balance_rows, balances, check,
                     created, eq, log, names, ok, timed_create, transfer, watchdog)

P, POST, VOID = TF.PENDING, TF.POST_PENDING_TRANSFER, TF.VOID_PENDING_TRANSFER
RELEASE_WITHIN_NS = 3_000_000_000  # the server pulses within ~100 ms; generous for a busy CI

watchdog(60)

with tb.ClientSync(cluster_id=0, replica_addresses=address()) as c:
    created(timed_create(c.create_accounts, [account(1, flags=AF.HISTORY), account(2)]),
            "accounts")
    r = timed_create(c.create_transfers, [
        transfer(10, 1, 2, 10, flags=P, timeout=1),      # left to expire
        transfer(11, 1, 2, 5, flags=P, timeout=1),       # posted in time
        transfer(12, 1, 2, 3, flags=P),                  # timeout 0: never expires
        transfer(13, 1, 2, 4, flags=P, timeout=3600),    # far deadline
    ])
    created(r, "pending transfers")
    deadline = r[0].timestamp + 1_000_000_000
    eq(balances(c, 1), (22, 0, 0, 0), "account 1 with four pending")

    r_post = timed_create(c.create_transfers, [
        transfer(20, 0, 0, tb.AMOUNT_MAX, ledger=0, code=0, flags=POST, pending_id=11)])
    check(r_post[0].timestamp < deadline, "the post was not in time: the machine is too slow")
    created(r_post, "post before the deadline")
    eq(balances(c, 1), (17, 5, 0, 0), "account 1 after the post")

    # Poll: the 10 stays pending until the deadline, then is released.
    released_at = None
    while released_at is None:
        before = time.time_ns()
        state = balances(c, 1)
        if state == (7, 5, 0, 0):
            released_at = time.time_ns()
            break
        eq(state, (17, 5, 0, 0), "account 1 while 10 is pending")
        check(before < deadline + RELEASE_WITHIN_NS,
              f"10 still pending {(before - deadline) / 1e9:.3f} s after its deadline")
        time.sleep(0.02)
    # Expiry is defined on the server's timestamps, which may run a few µs ahead of the wall
    # clock after big batches: 1 ms of slack.
    check(released_at >= deadline - 1_000_000,
          f"released {(deadline - released_at) / 1e9:.3f} s before the deadline")
    log(f"released {(released_at - deadline) / 1e6:.1f} ms after the deadline")
    eq(balances(c, 2), (0, 0, 7, 5), "account 2 after the expiry")

    # Well after the deadline: neither post nor void; the other pending transfers still resolve.
    while time.time_ns() < deadline + 1_000_000_000:
        time.sleep(0.05)
    r = timed_create(c.create_transfers, [
        transfer(30, 0, 0, tb.AMOUNT_MAX, ledger=0, code=0, flags=POST, pending_id=10),
        transfer(31, 0, 0, 0, ledger=0, code=0, flags=VOID, pending_id=10),
        transfer(32, 0, 0, 3, ledger=0, code=0, flags=POST, pending_id=12),
        transfer(33, 0, 0, 0, ledger=0, code=0, flags=VOID, pending_id=13),
        transfer(34, 0, 0, 0, ledger=0, code=0, flags=VOID, pending_id=11),
    ])
    eq(names(r), ["PENDING_TRANSFER_EXPIRED", "PENDING_TRANSFER_EXPIRED", "CREATED", "CREATED",
                  "PENDING_TRANSFER_ALREADY_POSTED"], "resolutions after the deadline")
    eq(balances(c, 1), (0, 8, 0, 0), "account 1 at the end")
    eq(balances(c, 2), (0, 0, 0, 8), "account 2 at the end")

    # The expired transfer is still stored as it was; the expiry added no history row.
    found = c.lookup_transfers([10])
    eq([(t.amount, t.flags, t.timeout) for t in found], [(10, P, 1)], "expired transfer")
    rows = balance_rows(c.get_account_balances(account_filter(1)))
    eq([row[:4] for row in rows],
       [(10, 0, 0, 0), (15, 0, 0, 0), (18, 0, 0, 0), (22, 0, 0, 0),  # the four pending
        (17, 5, 0, 0),                                                 # post of 11
        (4, 8, 0, 0),                                                  # post of 12
        (0, 8, 0, 0)],                                                 # void of 13
       "history of account 1")

ok("expiry")
