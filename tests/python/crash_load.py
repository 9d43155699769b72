"""Load generator for the crash-recovery suite (crates/server/tests/crash.rs).

Several clients (ClientAsync), each with several tasks issuing create_transfers calls at once, so
that the official client packs concurrent calls into multi-batch requests and the server's group
commit merges clients into one journal record. Every call's events are chosen so that their
outcome is known in advance, whatever the order in which calls from different tasks are applied:

* plain transfers between accounts without limits, small debits from / credits to the limited
  accounts (funded at set-up far beyond what the load moves): `created`;
* linked chains of 2-4 transfers, a third of them with one member bound to fail (a missing
  account or a huge amount against a limit): all `created`, or the failing member's status and
  `linked_event_failed` for the others;
* pending transfers (timeout 0 or one hour), later posted (full, partial, AMOUNT_MAX) or voided by
  the same task once the pending transfer was acknowledged;
* single failures: missing debit account, `exceeds_credits`, `exceeds_debits`,
  `pending_transfer_not_found`.

Transfer ids encode (cycle, client, task, call sequence, event index). One JSON line per event of
interest goes to stdout, flushed at once:

  {"t":"setup"}                                     accounts and funding acknowledged
  {"t":"ready"}                                     load starts now
  {"t":"send","call":C,"ev":[[...]],"exp":[...]}    printed before the call is submitted
  {"t":"ack","call":C,"res":[[status,timestamp]]}   printed when the reply arrived
  {"t":"done"}                                      bounded load finished (--calls)

Events are lists in crash_common.FIELDS order. The harness SIGKILLs the server at a random moment
and then this process; it never stops by itself before --max-seconds unless --calls is given.
"""

import argparse
import asyncio
import json
import random
import sys
import time

import tigerbeetle as tb

import crash_common as common
from crash_common import CREATED, AMOUNT_MAX, F, S


def emit(record):
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Call:
    """Builds one create_transfers call: its events and their expected statuses."""

    def __init__(self, ids):
        self.ids = ids
        self.events = []
        self.expected = []
        self.pendings = []  # indexes of pending transfers in this call

    def next_id(self):
        return next(self.ids)

    def add(self, event, status):
        self.events.append(event)
        self.expected.append(status)


class Task:
    def __init__(self, args, client, task):
        self.args = args
        self.client_index = client
        self.task_index = task
        self.rng = random.Random(f"{args.seed}-{args.cycle}-{client}-{task}")
        self.sequence = 0
        # Acknowledged `created` pending transfers (events) not yet posted or voided.
        self.pendings = []

    def ids(self):
        base = (self.args.cycle << 64) | (self.client_index << 56) | (self.task_index << 48)
        base |= self.sequence << 13
        index = 0
        while True:
            assert index < (1 << 13)
            yield base | index
            index += 1

    def plain_pair(self, ledger):
        debit, credit = self.rng.sample(common.plain_accounts(ledger) + [common.history_account(ledger)], 2)
        return debit, credit

    def user_data(self):
        rng = self.rng
        return [rng.getrandbits(128), rng.getrandbits(64), rng.getrandbits(32)]

    def transfer(self, call, debit, credit, amount, ledger, flags=0, timeout=0, pending_id=0):
        return [call.next_id(), debit, credit, amount, pending_id] + self.user_data() + [
            timeout,
            ledger,
            self.rng.randint(1, 100),
            flags,
        ]

    def failing(self, call, ledger, flags=0):
        """A transfer bound to fail whatever else happens, and its status."""
        kind = self.rng.randrange(3)
        plain = common.plain_accounts(ledger)
        if kind == 0:
            event = self.transfer(call, plain[2], common.missing_account(ledger), 5, ledger, flags)
            return event, int(S.CREDIT_ACCOUNT_NOT_FOUND)
        if kind == 1:
            event = self.transfer(call, common.limited_debits(ledger), plain[3], common.HUGE, ledger, flags)
            return event, int(S.EXCEEDS_CREDITS)
        event = self.transfer(call, plain[4], common.limited_credits(ledger), common.HUGE, ledger, flags)
        return event, int(S.EXCEEDS_DEBITS)

    def build(self):
        self.sequence += 1
        call = Call(self.ids())
        rng = self.rng
        size = rng.randint(self.args.events_min, self.args.events_max)
        while len(call.events) < size:
            ledger = rng.choice(common.LEDGERS)
            plain = common.plain_accounts(ledger)
            roll = rng.random()
            if roll < 0.50:
                debit, credit = self.plain_pair(ledger)
                call.add(self.transfer(call, debit, credit, rng.randint(1, 1000), ledger), CREATED)
            elif roll < 0.57:
                event = self.transfer(call, common.limited_debits(ledger), rng.choice(plain), rng.randint(1, 1000), ledger)
                call.add(event, CREATED)
            elif roll < 0.64:
                event = self.transfer(call, rng.choice(plain), common.limited_credits(ledger), rng.randint(1, 1000), ledger)
                call.add(event, CREATED)
            elif roll < 0.76:
                self.chain(call, ledger)
            elif roll < 0.86:
                debit, credit = self.plain_pair(ledger)
                timeout = rng.choice([0, 0, 3600])
                event = self.transfer(call, debit, credit, rng.randint(2, 1000), ledger, int(F.PENDING), timeout)
                call.pendings.append(len(call.events))
                call.add(event, CREATED)
            elif roll < 0.95 and self.pendings:
                self.resolve(call)
            else:
                self.single_failure(call, ledger)
        return call

    def chain(self, call, ledger):
        rng = self.rng
        length = rng.randint(2, 4)
        fails_at = rng.randrange(length) if rng.random() < 1 / 3 else None
        statuses = []
        for member in range(length):
            flags = int(F.LINKED) if member < length - 1 else 0
            if member == fails_at:
                event, status = self.failing(call, ledger, flags)
            else:
                debit, credit = self.plain_pair(ledger)
                event = self.transfer(call, debit, credit, rng.randint(1, 1000), ledger, flags)
                status = CREATED
            call.events.append(event)
            statuses.append(status)
        if fails_at is not None:
            statuses = [status if index == fails_at else int(S.LINKED_EVENT_FAILED) for index, status in enumerate(statuses)]
        call.expected.extend(statuses)

    def resolve(self, call):
        """Posts or voids an acknowledged pending transfer, inheriting fields at random."""
        rng = self.rng
        pending = self.pendings.pop(rng.randrange(len(self.pendings)))
        _, debit, credit, amount, _, _, _, _, _, ledger, code, _ = pending
        kind = rng.randrange(5)
        if kind == 0:
            flags, amount_sent = int(F.POST_PENDING_TRANSFER), amount
        elif kind == 1:
            flags, amount_sent = int(F.POST_PENDING_TRANSFER), rng.randint(1, amount - 1)
        elif kind == 2:
            flags, amount_sent = int(F.POST_PENDING_TRANSFER), AMOUNT_MAX
        elif kind == 3:
            flags, amount_sent = int(F.VOID_PENDING_TRANSFER), 0
        else:
            flags, amount_sent = int(F.VOID_PENDING_TRANSFER), amount
        inherit = rng.random() < 0.5
        user_data = [0, 0, 0] if rng.random() < 0.5 else self.user_data()
        event = [
            call.next_id(),
            0 if inherit else debit,
            0 if inherit else credit,
            amount_sent,
            pending[0],
            *user_data,
            0,
            0 if inherit else ledger,
            0 if inherit else code,
            flags,
        ]
        call.add(event, CREATED)

    def single_failure(self, call, ledger):
        rng = self.rng
        kind = rng.randrange(4)
        plain = common.plain_accounts(ledger)
        if kind == 0:
            event = self.transfer(call, common.missing_account(ledger), plain[0], 7, ledger)
            call.add(event, int(S.DEBIT_ACCOUNT_NOT_FOUND))
        elif kind == 1:
            event = self.transfer(call, common.limited_debits(ledger), plain[1], common.HUGE, ledger)
            call.add(event, int(S.EXCEEDS_CREDITS))
        elif kind == 2:
            event = self.transfer(call, plain[2], common.limited_credits(ledger), common.HUGE, ledger)
            call.add(event, int(S.EXCEEDS_DEBITS))
        else:
            identifier = call.next_id()
            event = [identifier, 0, 0, AMOUNT_MAX, (1 << 127) | identifier, 0, 0, 0, 0, 0, 0, int(F.POST_PENDING_TRANSFER)]
            call.add(event, int(S.PENDING_TRANSFER_NOT_FOUND))

    async def run(self, client, deadline):
        calls = 0
        while time.monotonic() < deadline and (self.args.calls == 0 or calls < self.args.calls):
            call = self.build()
            name = f"{self.args.cycle}.{self.client_index}.{self.task_index}.{self.sequence}"
            record = {"t": "send", "call": name, "n": len(call.events), "exp": call.expected}
            if not self.args.no_events:
                record["ev"] = call.events
            transfers = [common.to_transfer(event) for event in call.events]
            emit(record)
            results = await client.create_transfers(transfers)
            emit({"t": "ack", "call": name, "res": [[int(result.status), int(result.timestamp)] for result in results]})
            calls += 1
            for index in call.pendings:
                if int(results[index].status) == CREATED:
                    self.pendings.append(call.events[index])


async def setup(client):
    accounts = [
        tb.Account(id=account, ledger=ledger, code=code, flags=tb.AccountFlags(flags))
        for account, ledger, code, flags in common.accounts()
    ]
    results = await client.create_accounts(accounts)
    for account, result in zip(accounts, results):
        if result.status not in (tb.CreateAccountStatus.CREATED, tb.CreateAccountStatus.EXISTS):
            common.fail(f"set-up: account {account.id}: {result.status!r}")
    funding = common.funding_transfers()
    results = await client.create_transfers([common.to_transfer(event) for event in funding])
    for event, result in zip(funding, results):
        if result.status not in (S.CREATED, S.EXISTS):
            common.fail(f"set-up: funding transfer {event[0]}: {result.status!r}")
    emit({"t": "setup"})


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--cycle", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--events-min", type=int, default=1)
    parser.add_argument("--events-max", type=int, default=40)
    parser.add_argument("--calls", type=int, default=0, help="calls per task; 0: until killed")
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--no-events", action="store_true", help="omit events from send lines")
    args = parser.parse_args()
    assert 1 <= args.cycle < (1 << 48)
    assert args.clients < 256 and args.tasks < 256
    assert 1 <= args.events_min <= args.events_max <= 8000

    clients = [tb.ClientAsync(cluster_id=0, replica_addresses=args.address) for _ in range(args.clients)]
    await setup(clients[0])
    emit({"t": "ready"})
    deadline = time.monotonic() + args.max_seconds
    tasks = [
        Task(args, client_index, task_index).run(client, deadline)
        for client_index, client in enumerate(clients)
        for task_index in range(args.tasks)
    ]
    await asyncio.gather(*tasks)
    emit({"t": "done"})
    for client in clients:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
