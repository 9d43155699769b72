"""What the crash-recovery load generator (crash_load.py) and checker (crash_check.py) share:
the chart of accounts, the event encoding in their JSON lines, and the client set-up.

Driven by crates/server/tests/crash.rs; see that file for the scenarios.
"""

import sys

import tigerbeetle as tb

S = tb.CreateTransferStatus
F = tb.TransferFlags

CREATED = int(S.CREATED)
AMOUNT_MAX = (1 << 128) - 1
LEDGERS = (1, 2)
# Far more than all small debits and credits the load will ever move, far less than a "huge" one.
FUNDING = 10**15
HUGE = 10**20


def plain_accounts(ledger):
    """Accounts without balance limits."""
    return [1000 * ledger + index for index in range(1, 7)]


def limited_debits(ledger):
    """debits_must_not_exceed_credits, funded with FUNDING credits at set-up."""
    return 1000 * ledger + 100


def limited_credits(ledger):
    """credits_must_not_exceed_debits, funded with FUNDING debits at set-up."""
    return 1000 * ledger + 101


def history_account(ledger):
    return 1000 * ledger + 102


def missing_account(ledger):
    """Never created."""
    return 1000 * ledger + 999


def accounts():
    """Every account of the chart: (id, ledger, code, flags)."""
    result = []
    for ledger in LEDGERS:
        for account in plain_accounts(ledger):
            result.append((account, ledger, 10, 0))
        result.append(
            (limited_debits(ledger), ledger, 20, int(tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS))
        )
        result.append(
            (limited_credits(ledger), ledger, 21, int(tb.AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS))
        )
        result.append((history_account(ledger), ledger, 22, int(tb.AccountFlags.HISTORY)))
    return result


def funding_transfers():
    """Set-up transfers (fixed small ids, below every load id): fund the limited accounts."""
    result = []
    for ledger in LEDGERS:
        plain = plain_accounts(ledger)
        result.append([10 * ledger + 1, plain[0], limited_debits(ledger), FUNDING, 0, 0, 0, 0, 0, ledger, 1, 0])
        result.append([10 * ledger + 2, limited_credits(ledger), plain[1], FUNDING, 0, 0, 0, 0, 0, ledger, 1, 0])
    return result


# An event in the JSON lines: a list in this field order (the stored transfer adds `timestamp`).
FIELDS = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "pending_id",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "timeout",
    "ledger",
    "code",
    "flags",
)


def to_transfer(event):
    values = dict(zip(FIELDS, event))
    values["flags"] = F(values["flags"])
    return tb.Transfer(**values)


def from_transfer(transfer):
    """A stored transfer as a list: FIELDS, then its timestamp."""
    return [int(getattr(transfer, field)) for field in FIELDS] + [int(transfer.timestamp)]


def fail(message):
    sys.stderr.write(f"FAIL: {message}\n")
    sys.stderr.flush()
    sys.exit(1)
