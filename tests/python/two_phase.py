"""Pending transfers, post (full with AMOUNT_MAX, partial), void, and every way a second
resolution fails (ledger.md §2.4), with balances after each step and the history rows.

    python3 two_phase.py ADDRESS
"""

import tigerbeetle as tb

from tbcheck import (AF, TF, account, account_filter, address, balance_rows, balances, created,
                     eq, ids, names, ok, timed_create, transfer, watchdog)

P, POST, VOID = TF.PENDING, TF.POST_PENDING_TRANSFER, TF.VOID_PENDING_TRANSFER
MAX = tb.AMOUNT_MAX


def post(id, pending_id, amount, **fields):
    """A post that inherits everything (zero fields) but what `fields` sets."""
    return tb.Transfer(**{"id": id, "pending_id": pending_id, "amount": amount, "flags": POST,
                          **fields})


def void(id, pending_id, amount=0, **fields):
    return tb.Transfer(**{"id": id, "pending_id": pending_id, "amount": amount, "flags": VOID,
                          **fields})


watchdog(60)

with tb.ClientSync(cluster_id=0, replica_addresses=address()) as c:
    created(timed_create(c.create_accounts, [account(1, flags=AF.HISTORY),
                                             account(2, flags=AF.HISTORY), account(3)]),
            "accounts")
    stamps = {}
    rows = []  # expected history rows of account 1: (dp, dpost, cp, cpost, timestamp)

    def step(events, statuses, account_1, account_2, what):
        r = timed_create(c.create_transfers, events)
        eq(names(r), statuses, what)
        for event, result in zip(events, r):
            if result.status.name == "CREATED":
                stamps[event.id] = result.timestamp
                rows.append(account_1 + (result.timestamp,))
        eq(balances(c, 1), account_1, f"account 1 after {what}")
        eq(balances(c, 2), account_2, f"account 2 after {what}")
        return r

    # Four pending transfers; one plain transfer, to post/void a non-pending one later.
    r = timed_create(c.create_transfers, [
        transfer(10, 1, 2, 100, flags=P, user_data_64=1),
        transfer(11, 1, 2, 200, flags=P, code=7),
        transfer(12, 1, 2, 50, flags=P),
        transfer(13, 1, 2, 70, flags=P),
    ])
    created(r, "pending transfers")
    for id, result, dp in zip((10, 11, 12, 13), r, (100, 300, 350, 420)):
        stamps[id] = result.timestamp
        rows.append((dp, 0, 0, 0, result.timestamp))
    eq(balances(c, 1), (420, 0, 0, 0), "account 1 with four pending")
    eq(balances(c, 2), (0, 0, 420, 0), "account 2 with four pending")
    step([transfer(14, 2, 1, 5)], ["CREATED"], (420, 0, 0, 5), (0, 5, 420, 0), "plain transfer")

    # Full post of 10 with AMOUNT_MAX: amount, accounts, ledger and code come from the pending.
    step([post(101, 10, MAX)], ["CREATED"], (320, 100, 0, 5), (0, 5, 320, 100), "full post")
    eq(c.lookup_transfers([101]),
       [tb.Transfer(id=101, debit_account_id=1, credit_account_id=2, amount=100, pending_id=10,
                    user_data_128=0, user_data_64=1, user_data_32=0, timeout=0, ledger=700,
                    code=1, flags=POST, timestamp=stamps[101])],
       "the posting transfer")

    # Partial post of 11 (60 of 200): the remainder is released.
    step([post(102, 11, 60, user_data_64=9)], ["CREATED"], (120, 160, 0, 5), (0, 5, 120, 160),
         "partial post")
    eq(c.lookup_transfers([102])[0].amount, 60, "partial post amount")
    eq(c.lookup_transfers([102])[0].code, 7, "code inherited from the pending transfer")
    eq(c.lookup_transfers([102])[0].user_data_64, 9, "user data from the post itself")

    # Failures that leave 12 and 13 pending.
    step([
        post(103, 12, 51),                        # more than pending
        void(104, 13, 10),                        # void must be the whole amount
        post(105, 13, 70, debit_account_id=2),    # not the pending's debit account
        post(106, 13, 70, code=9),                # not the pending's code
        post(107, 999, 1),                        # no such pending transfer
        post(108, 14, 1),                         # 14 is not pending
        post(109, 109, 1),                        # its own id
        post(110, 0, 1),                          # pending_id 0
        post(111, 13, 70, timeout=1),             # post carries no timeout
        transfer(112, 1, 2, 1, flags=P | POST, pending_id=13),
    ], ["EXCEEDS_PENDING_TRANSFER_AMOUNT", "PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT",
        "PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID", "PENDING_TRANSFER_HAS_DIFFERENT_CODE",
        "PENDING_TRANSFER_NOT_FOUND", "PENDING_TRANSFER_NOT_PENDING",
        "PENDING_ID_MUST_BE_DIFFERENT", "PENDING_ID_MUST_NOT_BE_ZERO",
        "TIMEOUT_RESERVED_FOR_PENDING_TRANSFER", "FLAGS_ARE_MUTUALLY_EXCLUSIVE"],
         (120, 160, 0, 5), (0, 5, 120, 160), "invalid posts and voids")

    # Void 12.
    step([void(120, 12)], ["CREATED"], (70, 160, 0, 5), (0, 5, 70, 160), "void")
    eq(c.lookup_transfers([120])[0].amount, 50, "a void records the pending amount")

    # Second resolutions fail, and change nothing.
    step([post(121, 10, MAX), post(122, 10, 1), void(123, 11), post(124, 12, MAX),
          void(125, 12)],
         ["PENDING_TRANSFER_ALREADY_POSTED", "PENDING_TRANSFER_ALREADY_POSTED",
          "PENDING_TRANSFER_ALREADY_POSTED", "PENDING_TRANSFER_ALREADY_VOIDED",
          "PENDING_TRANSFER_ALREADY_VOIDED"],
         (70, 160, 0, 5), (0, 5, 70, 160), "second resolutions")

    # Resubmitting a post is idempotent: exists, with the original timestamp.
    r = step([post(101, 10, MAX), post(101, 10, 99)], ["EXISTS", "EXISTS_WITH_DIFFERENT_AMOUNT"],
             (70, 160, 0, 5), (0, 5, 70, 160), "post resubmitted")
    eq(r[0].timestamp, stamps[101], "exists carries the post's timestamp")

    # Post 13 with its exact amount, inheriting nothing but matching everything.
    step([transfer(130, 1, 2, 70, flags=POST, pending_id=13)], ["CREATED"],
         (0, 230, 0, 5), (0, 5, 0, 230), "post with explicit fields")

    # The pending transfers themselves are immutable.
    eq([(t.id, t.amount, t.flags) for t in c.lookup_transfers([10, 11, 12, 13])],
       [(10, 100, P), (11, 200, P), (12, 50, P), (13, 70, P)], "pending transfers unchanged")

    # Balances after each transfer of account 1, in order.
    eq(balance_rows(c.get_account_balances(account_filter(1))), rows, "history of account 1")
    eq(ids(c.get_account_transfers(account_filter(1))),
       [10, 11, 12, 13, 14, 101, 102, 120, 130], "transfers of account 1")
    eq(balances(c, 3), (0, 0, 0, 0), "account 3 untouched")

ok("two_phase")
