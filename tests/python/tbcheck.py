"""Shared helpers for the end-to-end scripts that drive `tally start` with the official
TigerBeetle Python client (0.17.9).

Every script takes the server address as its first argument, checks exact expectations with
`eq` (which raises with both values on a mismatch, so the script exits non-zero and prints what
differed), and prints `OK <name>` as its last line on success. `watchdog` makes a hang a failure:
after the given time every thread's stack is dumped and the process exits with status 1.
"""

import faulthandler
import sys
import time

import tigerbeetle as tb

AF = tb.AccountFlags
TF = tb.TransferFlags
AFF = tb.AccountFilterFlags
QFF = tb.QueryFilterFlags
TS = tb.CreateTransferStatus
AS = tb.CreateAccountStatus


def watchdog(seconds):
    faulthandler.dump_traceback_later(seconds, exit=True)


def address():
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: {sys.argv[0]} ADDRESS ...")
    return sys.argv[1]


def log(*parts):
    print(*parts, flush=True)


def eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}:\n  expected {expected!r}\n  got      {actual!r}")


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def names(results):
    """The status names of create results, e.g. ['CREATED', 'EXISTS']."""
    return [result.status.name for result in results]


def created(results, what):
    eq(names(results), ["CREATED"] * len(results), what)


def consecutive(timestamps, what):
    """Timestamps of the events of one batch (or of batches packed in one request)."""
    eq(list(timestamps), list(range(timestamps[0], timestamps[0] + len(timestamps))), what)


def ids(objects):
    return [o.id for o in objects]


def account(id, ledger=700, code=10, flags=AF.NONE, **fields):
    return tb.Account(id=id, ledger=ledger, code=code, flags=flags, **fields)


def transfer(id, debit, credit, amount, ledger=700, code=1, flags=TF.NONE, **fields):
    return tb.Transfer(id=id, debit_account_id=debit, credit_account_id=credit, amount=amount,
                       ledger=ledger, code=code, flags=flags, **fields)


def account_filter(account_id, flags=AFF.DEBITS | AFF.CREDITS, limit=100, timestamp_min=0,
                   timestamp_max=0, user_data_128=0, user_data_64=0, user_data_32=0, code=0):
    return tb.AccountFilter(account_id=account_id, user_data_128=user_data_128,
                            user_data_64=user_data_64, user_data_32=user_data_32, code=code,
                            timestamp_min=timestamp_min, timestamp_max=timestamp_max,
                            limit=limit, flags=flags)


def query_filter(limit=100, flags=QFF.NONE, timestamp_min=0, timestamp_max=0, user_data_128=0,
                 user_data_64=0, user_data_32=0, ledger=0, code=0):
    return tb.QueryFilter(user_data_128=user_data_128, user_data_64=user_data_64,
                          user_data_32=user_data_32, ledger=ledger, code=code,
                          timestamp_min=timestamp_min, timestamp_max=timestamp_max, limit=limit,
                          flags=flags)


def balances(client, id):
    """(debits_pending, debits_posted, credits_pending, credits_posted) of one account."""
    found = client.lookup_accounts([id])
    eq(len(found), 1, f"lookup_accounts([{id}]) count")
    a = found[0]
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


def balance_rows(rows):
    return [(r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted, r.timestamp)
            for r in rows]


def timed_create(call, events):
    """Runs a create call and checks §6 of the wire spec: event i of n gets the timestamp
    T - n + i + 1 (consecutive), stamped from the server's wall clock (same machine, same clock);
    `exists` results carry the stored object's timestamp instead, which the caller checks."""
    before = time.time_ns()
    results = call(events)
    after = time.time_ns()
    eq(len(results), len(events), "one result per event")
    own = [(i, r.timestamp) for i, r in enumerate(results) if r.status.name != "EXISTS"]
    if own:
        first = own[0][1] - own[0][0]
        eq([t for _, t in own], [first + i for i, _ in own], "event timestamps of one batch")
        last = first + len(events) - 1
        check(before < first and last <= after + len(events) + 1_000_000,
              f"timestamps {first}..{last} not from the wall clock {before}..{after}")
    return results


def ok(name):
    log(f"OK {name}")
