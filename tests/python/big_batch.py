"""Full-size batches (ledger.md §2.6, tigerbeetle-wire.md §5.5): 8,189 transfers in one
create_transfers call (a 1 MiB request) succeed; 8,190 are refused by the client with
TooMuchDataError and nothing is sent; reads that fill a whole 1 MiB reply work, and one more
result than fits is refused client-side too. Ten full batches in all fill more than one 8 MiB
journal segment.

    python3 big_batch.py ADDRESS
"""

import tigerbeetle as tb

from tbcheck import (account, account_filter, address, balances, created, eq, ids, ok,
                     query_filter, timed_create, transfer, watchdog)

MAX = 8189

watchdog(60)


def too_much_data(call, what):
    try:
        call()
    except tb.TooMuchDataError:
        return
    except Exception as error:  # noqa: BLE001 - report whatever else came
        raise AssertionError(f"{what}: expected TooMuchDataError, got {error!r}")
    raise AssertionError(f"{what}: expected TooMuchDataError, the call succeeded")


with tb.ClientSync(cluster_id=0, replica_addresses=address()) as c:
    created(timed_create(c.create_accounts, [account(1), account(2)]), "accounts")

    events = [transfer(100_000 + i, 1, 2, 1, user_data_64=i) for i in range(MAX)]
    rt = timed_create(c.create_transfers, events)
    created(rt, f"{MAX} transfers")
    eq(balances(c, 1), (0, MAX, 0, 0), "account 1 after the full batch")

    too_much_data(lambda: c.create_transfers(
        [transfer(200_000 + i, 1, 2, 1) for i in range(MAX + 1)]), f"{MAX + 1} transfers")
    eq(balances(c, 1), (0, MAX, 0, 0), "nothing of the refused batch was applied")
    eq(c.lookup_transfers([200_000]), [], "the refused batch's first transfer")

    too_much_data(lambda: c.create_accounts([account(300_000 + i) for i in range(MAX + 1)]),
                  f"{MAX + 1} accounts")
    r = timed_create(c.create_accounts, [account(300_000 + i) for i in range(MAX)])
    created(r, f"{MAX} accounts")

    # Reads of a whole reply.
    found = c.lookup_transfers([e.id for e in events])
    eq(len(found), MAX, "lookup of a full batch of ids")
    eq([t.timestamp for t in found], [x.timestamp for x in rt], "stored timestamps")
    eq(ids(found), [e.id for e in events], "lookup order")
    eq([t.user_data_64 for t in found], list(range(MAX)), "lookup contents")
    too_much_data(lambda: c.lookup_transfers([e.id for e in events] + [1]),
                  f"lookup of {MAX + 1} ids")
    eq(len(c.lookup_accounts([300_000 + i for i in range(MAX)])), MAX, "lookup of accounts")

    got = c.get_account_transfers(account_filter(1, limit=MAX))
    eq(ids(got), [e.id for e in events], f"get_account_transfers limit {MAX}")
    too_much_data(lambda: c.get_account_transfers(account_filter(1, limit=MAX + 1)),
                  f"get_account_transfers limit {MAX + 1}")
    got = c.query_transfers(query_filter(ledger=700, limit=MAX))
    eq(ids(got), [e.id for e in events], f"query_transfers limit {MAX}")
    got = c.query_accounts(query_filter(limit=MAX, flags=tb.QueryFilterFlags.REVERSED))
    eq(ids(got), [300_000 + i for i in reversed(range(MAX))], f"query_accounts limit {MAX}")
    too_much_data(lambda: c.query_accounts(query_filter(limit=MAX + 1)),
                  f"query_accounts limit {MAX + 1}")

    # Eight more full batches: about 10 MiB of log in all, more than one 8 MiB journal segment
    # of the test server (the harness then checks the replay digest across segments).
    for batch in range(8):
        first = 1_000_000 + batch * MAX
        created(timed_create(c.create_transfers,
                             [transfer(first + i, 2, 1, 1) for i in range(MAX)]),
                f"full batch {batch}")
    eq(balances(c, 1), (0, MAX, 0, 8 * MAX), "account 1 at the end")
    eq(ids(c.lookup_transfers([1_000_000, 1_000_000 + 8 * MAX - 1])),
       [1_000_000, 1_000_000 + 8 * MAX - 1], "first and last transfer of the extra batches")

ok("big_batch")
