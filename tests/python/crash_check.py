"""Checker for the crash-recovery suite (crates/server/tests/crash.rs).

Reads the JSON lines crash_load.py printed in one run (the harness saved them, including those of
calls that never got a reply) and checks the restarted server with lookup_transfers and
lookup_accounts:

* every acknowledged `created` transfer exists with exactly the submitted fields (post and void
  resolved from their pending transfer as the spec says) and the acknowledged timestamp; every
  acknowledged failure did not create its transfer; every status is the one the generator
  expected;
* every call sent without a reply was applied whole or not at all: all its `created`-able
  transfers exist or none does, and its failing ones never do; every linked chain is whole or
  absent;
* per ledger, the debits and credits (posted, and pending) of all accounts sum equal; no account
  breaks its limit flag; every account's balances equal the fold of the transfers that exist
  (carried from earlier runs in --state, plus this run's);
* a random sample of transfers verified in earlier runs is still there, unchanged (--full: all).

--absent FILE names transfer ids that must not exist although acknowledged (the harness cut
their journal record on purpose). Prints one summary line; exits 1 with the reasons otherwise.
"""

import argparse
import asyncio
import json
import os
import random
import sys

import tigerbeetle as tb

import crash_common as common
from crash_common import CREATED, AMOUNT_MAX, F

LOOKUP_MAX = 8189
SAMPLE_MAX = 4000


class Problems:
    def __init__(self):
        self.messages = []

    def add(self, message):
        self.messages.append(message)

    def finish(self):
        if self.messages:
            for message in self.messages[:50]:
                sys.stderr.write(f"FAIL: {message}\n")
            if len(self.messages) > 50:
                sys.stderr.write(f"... and {len(self.messages) - 50} more\n")
            sys.stderr.flush()
            sys.exit(1)


async def lookup_transfers(client, ids):
    found = {}
    ids = list(ids)
    for start in range(0, len(ids), LOOKUP_MAX):
        for transfer in await client.lookup_transfers(ids[start : start + LOOKUP_MAX]):
            found[int(transfer.id)] = common.from_transfer(transfer)
    return found


async def lookup_accounts(client, ids):
    found = {}
    for account in await client.lookup_accounts(list(ids)):
        found[int(account.id)] = account
    return found


def read_log(path):
    sends, acks = {}, {}
    order = []
    ready = False
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                # The generator was killed in the middle of writing a line.
                continue
            kind = record.get("t")
            if kind == "ready":
                ready = True
            elif kind == "send":
                sends[record["call"]] = record
                order.append(record["call"])
            elif kind == "ack":
                acks[record["call"]] = record["res"]
    return ready, order, sends, acks


def resolved(event, pending):
    """The transfer the server stores for `event` (FIELDS order, no timestamp)."""
    flags = event[11]
    if not flags & (int(F.POST_PENDING_TRANSFER) | int(F.VOID_PENDING_TRANSFER)):
        return list(event)
    stored = list(event)
    stored[1], stored[2] = pending[1], pending[2]
    stored[9], stored[10] = pending[9], pending[10]
    for field in (5, 6, 7):
        if event[field] == 0:
            stored[field] = pending[field]
    stored[8] = 0
    if flags & int(F.POST_PENDING_TRANSFER):
        stored[3] = pending[3] if event[3] == AMOUNT_MAX else event[3]
    else:
        stored[3] = pending[3]
    return stored


def chains(events):
    """Index ranges of the linked chains of a call."""
    result, start = [], None
    for index, event in enumerate(events):
        linked = event[11] & int(F.LINKED)
        if linked and start is None:
            start = index
        if not linked and start is not None:
            result.append(range(start, index + 1))
            start = None
    return result


def fold(balances, transfer, pending):
    """Adds a stored transfer's effect to balances: [debits_pending, debits_posted,
    credits_pending, credits_posted] per account."""
    debit, credit, amount, flags = transfer[1], transfer[2], transfer[3], transfer[11]
    zero = [0, 0, 0, 0]
    balance_debit = balances.setdefault(str(debit), list(zero))
    balance_credit = balances.setdefault(str(credit), list(zero))
    if flags & int(F.PENDING):
        balance_debit[0] += amount
        balance_credit[2] += amount
    elif flags & (int(F.POST_PENDING_TRANSFER) | int(F.VOID_PENDING_TRANSFER)):
        balance_debit[0] -= pending[3]
        balance_credit[2] -= pending[3]
        if flags & int(F.POST_PENDING_TRANSFER):
            balance_debit[1] += amount
            balance_credit[3] += amount
    else:
        balance_debit[1] += amount
        balance_credit[3] += amount


def load_state(path):
    if path and os.path.exists(path):
        with open(path) as file:
            return json.load(file)
    return {"runs": 0, "funded": False, "balances": {}, "sample": [], "seen": 0}


def save_state(path, state):
    temporary = path + ".tmp"
    with open(temporary, "w") as file:
        json.dump(state, file)
    os.replace(temporary, path)


async def check(args, client, problems):
    ready, order, sends, acks = read_log(args.log)
    absent = set()
    if args.absent:
        with open(args.absent) as file:
            absent = {int(line) for line in file if line.strip()}
    state = load_state(args.state)
    rng = random.Random(args.seed)

    # The set-up: accounts with their flags, funding transfers.
    chart = common.accounts()
    found_accounts = await lookup_accounts(client, [account[0] for account in chart])
    for account, ledger, code, flags in chart:
        stored = found_accounts.get(account)
        if stored is None:
            problems.add(f"account {account} does not exist")
        elif (int(stored.ledger), int(stored.code), int(stored.flags)) != (ledger, code, flags):
            problems.add(f"account {account} has ledger/code/flags {stored.ledger}/{stored.code}/{int(stored.flags)}")
    missing = await lookup_accounts(client, [common.missing_account(ledger) for ledger in common.LEDGERS])
    if missing:
        problems.add(f"accounts that were never created exist: {sorted(missing)}")
    funding = common.funding_transfers()
    stored_funding = await lookup_transfers(client, [event[0] for event in funding])
    new_transfers = []  # stored transfers (with timestamp) this run adds to the fold
    for event in funding:
        stored = stored_funding.get(event[0])
        if stored is None:
            if ready or state["funded"]:
                problems.add(f"funding transfer {event[0]} does not exist")
        elif stored[:12] != event:
            problems.add(f"funding transfer {event[0]} is {stored}, sent {event}")
        elif not state["funded"]:
            new_transfers.append(stored)
    if stored_funding and not state["funded"]:
        state["funded"] = len(stored_funding) == len(funding)

    # Every transfer this run sent.
    all_ids = [event[0] for name in order for event in sends[name]["ev"]]
    stored = await lookup_transfers(client, all_ids)
    pending_ids = {
        event[4]
        for name in order
        for event in sends[name]["ev"]
        if event[11] & (int(F.POST_PENDING_TRANSFER) | int(F.VOID_PENDING_TRANSFER))
    }
    pendings = await lookup_transfers(client, pending_ids)
    counts = {"acked": 0, "unacked_applied": 0, "unacked_absent": 0, "created": 0, "failed": 0, "chains": 0}

    def verify(name, index, event, expect_timestamp):
        transfer = stored[event[0]]
        pending = None
        if event[11] & (int(F.POST_PENDING_TRANSFER) | int(F.VOID_PENDING_TRANSFER)):
            pending = pendings.get(event[4])
            if pending is None:
                problems.add(f"call {name} event {index}: {event[0]} posts/voids {event[4]}, which does not exist")
                return
        expected = resolved(event, pending)
        if transfer[:12] != expected:
            problems.add(f"call {name} event {index}: stored {transfer[:12]}, expected {expected}")
        if expect_timestamp is not None and transfer[12] != expect_timestamp:
            problems.add(f"call {name} event {index}: timestamp {transfer[12]}, acknowledged {expect_timestamp}")
        new_transfers.append(transfer)

    for name in order:
        send = sends[name]
        events, expected = send["ev"], send["exp"]
        results = acks.get(name)
        if results is not None:
            counts["acked"] += 1
            if len(results) != len(events):
                problems.add(f"call {name}: {len(results)} results for {len(events)} events")
                continue
            for index, (event, (status, timestamp)) in enumerate(zip(events, results)):
                if status != expected[index]:
                    problems.add(f"call {name} event {index}: status {status}, expected {expected[index]}")
                exists = event[0] in stored
                if status == CREATED and event[0] in absent:
                    if exists:
                        problems.add(f"call {name} event {index}: {event[0]} exists, but its record was cut")
                elif status == CREATED:
                    counts["created"] += 1
                    if not exists:
                        problems.add(f"call {name} event {index}: acknowledged created {event[0]} does not exist")
                    else:
                        verify(name, index, event, timestamp)
                else:
                    counts["failed"] += 1
                    if exists:
                        problems.add(f"call {name} event {index}: failed with {status} but {event[0]} exists")
        else:
            creatable = [index for index, status in enumerate(expected) if status == CREATED]
            present = [index for index in creatable if events[index][0] in stored]
            if present and len(present) != len(creatable):
                problems.add(
                    f"call {name} (unacknowledged) is half-applied: {len(present)} of {len(creatable)} transfers exist"
                )
            for index, status in enumerate(expected):
                if status != CREATED and events[index][0] in stored:
                    problems.add(f"call {name} (unacknowledged) event {index}: bound to fail but exists")
            if present:
                counts["unacked_applied"] += 1
                for index in present:
                    verify(name, index, events[index], None)
            else:
                counts["unacked_absent"] += 1
        for chain in chains(events):
            counts["chains"] += 1
            present = [index for index in chain if events[index][0] in stored]
            if present and len(present) != len(chain):
                problems.add(f"call {name}: linked chain {list(chain)} is half-applied ({present} exist)")

    # Transfers verified in earlier runs are still there, unchanged.
    earlier = list(state["sample"])
    if args.full:
        earlier = []
        if args.expected and os.path.exists(args.expected):
            with open(args.expected) as file:
                earlier = [json.loads(line) for line in file if line.strip()]
    still = await lookup_transfers(client, [transfer[0] for transfer in earlier])
    for transfer in earlier:
        if still.get(transfer[0]) != transfer:
            problems.add(f"transfer verified in an earlier run changed or vanished: {transfer} now {still.get(transfer[0])}")

    # Invariants over the accounts.
    balances = state["balances"]
    for transfer in new_transfers:
        pending = None
        if transfer[11] & (int(F.POST_PENDING_TRANSFER) | int(F.VOID_PENDING_TRANSFER)):
            pending = pendings[transfer[4]]
        fold(balances, transfer, pending)
    if args.full:
        # Fold everything from scratch: funding, then every transfer ever verified (which includes
        # this run's), pending transfers before their posts and voids (they are older).
        everything = {transfer[0]: transfer for transfer in earlier}
        everything.update({transfer[0]: transfer for transfer in new_transfers})
        everything.update({event[0]: stored_funding[event[0]] for event in funding if event[0] in stored_funding})
        scratch = {}
        for transfer in sorted(everything.values(), key=lambda transfer: transfer[12]):
            pending = everything.get(transfer[4]) if transfer[4] else None
            fold(scratch, transfer, pending)
        if scratch != balances:
            problems.add("the fold of every transfer from scratch differs from the incremental fold")
    sums = {}
    for account, ledger, _, flags in chart:
        stored_account = found_accounts.get(account)
        if stored_account is None:
            continue
        actual = [
            int(stored_account.debits_pending),
            int(stored_account.debits_posted),
            int(stored_account.credits_pending),
            int(stored_account.credits_posted),
        ]
        expected_balance = balances.get(str(account), [0, 0, 0, 0])
        if actual != expected_balance:
            problems.add(f"account {account}: balances {actual}, the fold of its transfers gives {expected_balance}")
        total = sums.setdefault(ledger, [0, 0, 0, 0])
        for field in range(4):
            total[field] += actual[field]
        debits_pending, debits_posted, credits_pending, credits_posted = actual
        if flags & int(tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS) and debits_pending + debits_posted > credits_posted:
            problems.add(f"account {account} breaks debits_must_not_exceed_credits: {actual}")
        if flags & int(tb.AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS) and credits_pending + credits_posted > debits_posted:
            problems.add(f"account {account} breaks credits_must_not_exceed_debits: {actual}")
    for ledger, (debits_pending, debits_posted, credits_pending, credits_posted) in sums.items():
        if debits_posted != credits_posted:
            problems.add(f"ledger {ledger}: debits_posted {debits_posted} != credits_posted {credits_posted}")
        if debits_pending != credits_pending:
            problems.add(f"ledger {ledger}: debits_pending {debits_pending} != credits_pending {credits_pending}")

    problems.finish()

    # Carry what this run verified into the next.
    run_transfers = [transfer for transfer in new_transfers if transfer[0] not in stored_funding]
    if args.expected:
        with open(args.expected, "a") as file:
            for transfer in run_transfers:
                file.write(json.dumps(transfer) + "\n")
    sample = state["sample"]
    for transfer in run_transfers:
        state["seen"] += 1
        if len(sample) < SAMPLE_MAX:
            sample.append(transfer)
        else:
            slot = rng.randrange(state["seen"])
            if slot < SAMPLE_MAX:
                sample[slot] = transfer
    state["runs"] += 1
    if args.state:
        save_state(args.state, state)
    summary = " ".join(f"{key}={value}" for key, value in counts.items())
    print(f"ok run={state['runs']} calls={len(order)} {summary} rechecked={len(earlier)} transfers_total={state['seen']}")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--log", required=True, help="the generator's JSON lines")
    parser.add_argument("--state", help="JSON state carried between runs")
    parser.add_argument("--expected", help="JSON lines of every transfer verified so far (appended)")
    parser.add_argument("--absent", help="ids (one per line) that must not exist")
    parser.add_argument("--full", action="store_true", help="recheck every transfer ever verified")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    problems = Problems()
    client = tb.ClientAsync(cluster_id=0, replica_addresses=args.address)
    try:
        await check(args, client, problems)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
