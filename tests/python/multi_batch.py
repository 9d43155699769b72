"""Multi-batch requests (tigerbeetle-wire.md §5.2, §5.3, §6): one ClientAsync, many concurrent
calls gathered, so that the client packs several calls of one operation into one request. Every
call must get exactly its own results.

    python3 multi_batch.py ADDRESS
"""

import asyncio

import tigerbeetle as tb

from tbcheck import (AF, TF, account, account_filter, address, check, eq, ids, log, names, ok,
                     query_filter, transfer, watchdog)

CALLS = 12  # create_transfers calls gathered at once

watchdog(60)


def expected_statuses(call):
    """Call k creates 3 + (k % 3) transfers; in call 4 the second one fails (code 0), and call 7
    ends with a linked event: chains do not span batches, so it is an open chain although
    call 8's batch follows it in the same request."""
    n = 3 + call % 3
    statuses = ["CREATED"] * n
    if call == 4:
        statuses[1] = "CODE_MUST_NOT_BE_ZERO"
    if call == 7:
        statuses[-2:] = ["LINKED_EVENT_FAILED", "LINKED_EVENT_CHAIN_OPEN"]
    return statuses


def call_transfers(call):
    n = 3 + call % 3
    events = []
    for i in range(n):
        id = 1000 + 10 * call + i
        t = transfer(id, 1 + call % 2, 2 - call % 2, call + 1, user_data_32=call)
        if call == 4 and i == 1:
            t.code = 0
        if call == 7 and i == n - 1:
            t.flags = TF.LINKED
        if call == 7 and i == n - 2:
            t.flags = TF.LINKED
        events.append(t)
    return events


async def main():
    async with tb.ClientAsync(cluster_id=0, replica_addresses=address()) as c:
        # Set-up, one call at a time (this also registers the session).
        r = await c.create_accounts([account(1, flags=AF.HISTORY), account(2, flags=AF.HISTORY),
                                     account(3, code=30, user_data_64=3)])
        eq(names(r), ["CREATED"] * 3, "accounts")

        # Concurrent creates of accounts: each call its own results, in its own order.
        account_calls = [[account(100 + 10 * k + i, code=k + 1) for i in range(k)]
                         for k in range(1, 9)]
        account_calls[2][1].ledger = 0
        results = await asyncio.gather(*[c.create_accounts(a) for a in account_calls])
        for k, (events, r) in enumerate(zip(account_calls, results), start=1):
            want = ["CREATED"] * k
            if k == 3:
                want[1] = "LEDGER_MUST_NOT_BE_ZERO"
            eq(names(r), want, f"create_accounts call {k}")
        stamps = [r.timestamp for res in results for r in res]
        check(stamps == sorted(stamps) and len(set(stamps)) == len(stamps),
              "account events are stamped in call order")

        # Concurrent creates of transfers, then concurrent reads of different kinds.
        calls = [call_transfers(k) for k in range(CALLS)]
        results = await asyncio.gather(*[c.create_transfers(t) for t in calls])
        stamps = []
        for k, (events, r) in enumerate(zip(calls, results)):
            eq(names(r), expected_statuses(k), f"create_transfers call {k}")
            eq(len({x.timestamp for x in r}), len(r), f"call {k}: one timestamp per event")
            stamps.append([x.timestamp for x in r])
        for k in range(CALLS):
            eq(stamps[k], list(range(stamps[k][0], stamps[k][0] + len(stamps[k]))),
               f"call {k}: consecutive event timestamps")
        # Calls packed into one request get consecutive timestamps across their batches (§6);
        # separate requests are stamped from the wall clock, so never back to back.
        packed = sum(1 for k in range(1, CALLS) if stamps[k][0] == stamps[k - 1][-1] + 1)
        log(f"{packed} of {CALLS - 1} adjacent create_transfers calls shared a request")
        check(packed >= 1, "no two create_transfers calls were packed into one request")
        check(all(stamps[k][0] > stamps[k - 1][-1] for k in range(1, CALLS)),
              "calls are executed in submission order")

        created_ids = {e.id: s for k in range(CALLS)
                       for e, s in zip(calls[k], expected_statuses(k))}
        created_ids = sorted(id for id, s in created_ids.items() if s == "CREATED")
        debit_totals = {1: 0, 2: 0}
        for k in range(CALLS):
            for e, s in zip(calls[k], expected_statuses(k)):
                if s == "CREATED":
                    debit_totals[e.debit_account_id] += e.amount

        lookups = [[1, 2], [], [2, 99, 1], [3], [99], [1000, 1001], [1040, 1041, 1042],
                   list(range(1000, 1200))]
        account_lookups = lookups[:5]
        transfer_lookups = lookups[5:]
        filters_1 = [account_filter(1, limit=3), account_filter(2, limit=2),
                     account_filter(1, user_data_32=5), account_filter(3),
                     account_filter(1, limit=0)]
        queries = [query_filter(code=30), query_filter(user_data_32=6, limit=100),
                   query_filter(ledger=700, limit=2), query_filter(code=99)]
        gathered = await asyncio.gather(
            *[c.lookup_accounts(x) for x in account_lookups],
            *[c.lookup_transfers(x) for x in transfer_lookups],
            *[c.get_account_transfers(f) for f in filters_1],
            *[c.get_account_balances(f) for f in filters_1],
            *[c.query_accounts(q) for q in queries],
            *[c.query_transfers(q) for q in queries],
        )
        it = iter(gathered)
        for x in account_lookups:
            eq(ids(next(it)), [i for i in x if i in (1, 2, 3)], f"lookup_accounts({x})")
        for x in transfer_lookups:
            eq(ids(next(it)), [i for i in x if i in created_ids], f"lookup_transfers({x})")
        gat = [next(it) for _ in filters_1]
        eq(ids(gat[0]), created_ids[:3], "get_account_transfers(1, limit 3)")
        eq(ids(gat[1]), created_ids[:2], "get_account_transfers(2, limit 2)")
        eq(ids(gat[2]), [id for id in created_ids if 1050 <= id < 1060],
           "get_account_transfers(1, user_data_32 5)")
        eq(gat[3], [], "get_account_transfers(3)")
        eq(gat[4], [], "get_account_transfers(limit 0)")
        gab = [next(it) for _ in filters_1]
        eq([b.timestamp for b in gab[0]], [t.timestamp for t in gat[0]],
           "get_account_balances(1, limit 3) timestamps")
        eq(len(gab[1]), 2, "get_account_balances(2, limit 2)")
        eq([b.timestamp for b in gab[2]], [t.timestamp for t in gat[2]],
           "get_account_balances(1, user_data_32 5)")
        eq(gab[3], [], "get_account_balances of a non-history account")
        eq(gab[4], [], "get_account_balances(limit 0)")
        eq(ids(next(it)), [3], "query_accounts(code 30)")
        eq(next(it), [], "query_accounts(user_data_32 6)")
        eq(ids(next(it)), [1, 2], "query_accounts(ledger 700, limit 2)")
        eq(next(it), [], "query_accounts(code 99)")
        eq(next(it), [], "query_transfers(code 30)")
        eq(ids(next(it)), [id for id in created_ids if 1060 <= id < 1070],
           "query_transfers(user_data_32 6)")
        eq(ids(next(it)), created_ids[:2], "query_transfers(ledger 700, limit 2)")
        eq(next(it), [], "query_transfers(code 99)")

        # Balances: every created transfer of every call applied exactly once.
        a = {x.id: x for x in await c.lookup_accounts([1, 2])}
        eq((a[1].debits_posted, a[1].credits_posted, a[2].debits_posted, a[2].credits_posted),
           (debit_totals[1], debit_totals[2], debit_totals[2], debit_totals[1]), "balances")


asyncio.run(main())
ok("multi_batch")
