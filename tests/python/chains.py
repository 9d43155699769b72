"""Linked chains and idempotency (ledger.md §2.1-§2.3), with exact statuses, timestamps and
balances.

    python3 chains.py ADDRESS
"""

import tigerbeetle as tb

from tbcheck import (AF, TF, account, address, balances, check, created, eq, ids, names, ok,
                     timed_create, transfer, watchdog)

L = TF.LINKED

watchdog(60)

with tb.ClientSync(cluster_id=0, replica_addresses=address()) as c:
    r = timed_create(c.create_accounts, [
        account(1), account(2), account(3, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
    ])
    created(r, "accounts")
    ta1 = r[0].timestamp

    # --- Linked chains of accounts --------------------------------------------------------
    r = timed_create(c.create_accounts, [
        account(10, flags=AF.LINKED), account(11, flags=AF.LINKED), account(12, ledger=0),
        account(13),
    ])
    eq(names(r), ["LINKED_EVENT_FAILED", "LINKED_EVENT_FAILED", "LEDGER_MUST_NOT_BE_ZERO",
                  "CREATED"], "failing account chain")
    eq(ids(c.lookup_accounts([10, 11, 12, 13])), [13], "only the account after the chain")

    r = timed_create(c.create_accounts, [account(20, flags=AF.LINKED), account(21)])
    created(r, "complete account chain")
    r = timed_create(c.create_accounts, [account(30), account(31, flags=AF.LINKED)])
    eq(names(r), ["CREATED", "LINKED_EVENT_CHAIN_OPEN"], "account chain open at the end")
    eq(ids(c.lookup_accounts([20, 21, 30, 31])), [20, 21, 30], "accounts after chains")

    # --- Linked chains of transfers -------------------------------------------------------
    # A chain (101..103) fails at its last member: the earlier members are rolled back.
    r = timed_create(c.create_transfers, [
        transfer(100, 1, 2, 10),
        transfer(101, 1, 2, 5, flags=L),
        transfer(102, 1, 2, 6, flags=L),
        transfer(103, 1, 999, 7),
        transfer(104, 1, 2, 1),
    ])
    eq(names(r), ["CREATED", "LINKED_EVENT_FAILED", "LINKED_EVENT_FAILED",
                  "CREDIT_ACCOUNT_NOT_FOUND", "CREATED"], "chain failing at its end")
    eq(ids(c.lookup_transfers([100, 101, 102, 103, 104])), [100, 104], "stored transfers")
    eq(balances(c, 1), (0, 11, 0, 0), "account 1 after the failed chain")
    eq(balances(c, 2), (0, 0, 0, 11), "account 2 after the failed chain")

    # A chain failing at its first member: the later members are not evaluated (even the
    # invalid 113 gets linked_event_failed) up to and including the first unlinked event.
    r = timed_create(c.create_transfers, [
        transfer(110, 1, 999, 1, flags=L),
        transfer(111, 1, 2, 1, flags=L),
        transfer(112, 1, 2, 1, flags=L),
        transfer(113, 1, 2, 1, code=0),
        transfer(114, 1, 2, 2),
    ])
    eq(names(r), ["CREDIT_ACCOUNT_NOT_FOUND", "LINKED_EVENT_FAILED", "LINKED_EVENT_FAILED",
                  "LINKED_EVENT_FAILED", "CREATED"], "chain failing at its start")
    eq(ids(c.lookup_transfers([110, 111, 112, 113, 114])), [114], "stored transfers")
    eq(balances(c, 1), (0, 13, 0, 0), "account 1 after the second failed chain")

    # A chain left open at the end of the batch.
    r = timed_create(c.create_transfers, [
        transfer(120, 1, 2, 1),
        transfer(121, 1, 2, 1, flags=L),
        transfer(122, 1, 2, 1, flags=L),
    ])
    eq(names(r), ["CREATED", "LINKED_EVENT_FAILED", "LINKED_EVENT_CHAIN_OPEN"], "open chain")
    r = timed_create(c.create_transfers, [transfer(123, 1, 2, 1, flags=L)])
    eq(names(r), ["LINKED_EVENT_CHAIN_OPEN"], "a single linked event")
    eq(ids(c.lookup_transfers([120, 121, 122, 123])), [120], "stored transfers")
    eq(balances(c, 1), (0, 14, 0, 0), "account 1 after the open chains")

    # A complete chain commits every member.
    r = timed_create(c.create_transfers, [
        transfer(130, 1, 2, 1, flags=L), transfer(131, 1, 2, 2, flags=L), transfer(132, 1, 2, 3),
    ])
    created(r, "complete chain")
    eq(balances(c, 1), (0, 20, 0, 0), "account 1 after the complete chain")

    # A chain's earlier effects are what a later member sees, and are rolled back with it:
    # account 3 may not debit more than its credits (50).
    created(timed_create(c.create_transfers, [transfer(140, 2, 3, 50)]), "fund account 3")
    r = timed_create(c.create_transfers, [
        transfer(141, 3, 1, 40, flags=L), transfer(142, 3, 1, 20),
    ])
    eq(names(r), ["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"], "chain over the limit")
    eq(balances(c, 3), (0, 0, 0, 50), "account 3 after the rolled back chain")
    created(timed_create(c.create_transfers, [transfer(143, 3, 1, 50)]),
            "the whole credit is still available")
    eq(balances(c, 3), (0, 50, 0, 50), "account 3 after spending its credit")

    # --- Idempotency ----------------------------------------------------------------------
    # Accounts: an identical resubmission is `exists` with the original timestamp.
    r = timed_create(c.create_accounts, [account(1), account(1, code=11), account(1, ledger=701),
                                        account(1, user_data_64=1), account(1, flags=AF.HISTORY)])
    eq(names(r), ["EXISTS", "EXISTS_WITH_DIFFERENT_CODE", "EXISTS_WITH_DIFFERENT_LEDGER",
                  "EXISTS_WITH_DIFFERENT_USER_DATA_64", "EXISTS_WITH_DIFFERENT_FLAGS"],
       "account resubmissions")
    eq(r[0].timestamp, ta1, "exists carries the original timestamp")
    check(r[1].timestamp > ta1, "other failures carry their own timestamp")
    eq(c.lookup_accounts([1])[0].code, 10, "the account is unchanged")

    # Transfers: resubmission of 100 (amount 10).
    t100 = c.lookup_transfers([100])[0]
    before = [balances(c, i) for i in (1, 2, 3)]
    r = timed_create(c.create_transfers, [
        transfer(100, 1, 2, 10), transfer(100, 1, 2, 11), transfer(100, 2, 1, 10),
        transfer(100, 1, 2, 10, code=2), transfer(100, 1, 2, 10, user_data_32=3),
    ])
    eq(names(r), ["EXISTS", "EXISTS_WITH_DIFFERENT_AMOUNT",
                  "EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID", "EXISTS_WITH_DIFFERENT_CODE",
                  "EXISTS_WITH_DIFFERENT_USER_DATA_32"], "transfer resubmissions")
    eq(r[0].timestamp, t100.timestamp, "exists carries the original timestamp")
    eq([balances(c, i) for i in (1, 2, 3)], before, "resubmissions change no balance")

    # The same id twice in one batch: the second sees the first.
    r = timed_create(c.create_transfers, [transfer(150, 1, 2, 1), transfer(150, 1, 2, 1)])
    eq(names(r), ["CREATED", "EXISTS"], "same id twice in a batch")
    eq(r[1].timestamp, r[0].timestamp, "exists points at the first")

    # Transient failures retire the id (id_already_failed), even once the cause is gone.
    r = timed_create(c.create_transfers, [
        transfer(160, 1, 50, 1),      # credit account not found (yet)
        transfer(161, 3, 1, 1),       # exceeds_credits: account 3 has spent its 50
        transfer(162, 1, 2, 1, code=0),  # not transient
    ])
    eq(names(r), ["CREDIT_ACCOUNT_NOT_FOUND", "EXCEEDS_CREDITS", "CODE_MUST_NOT_BE_ZERO"],
       "first attempts")
    created(timed_create(c.create_accounts, [account(50)]), "the missing account")
    created(timed_create(c.create_transfers, [transfer(170, 2, 3, 5)]), "fund account 3 again")
    r = timed_create(c.create_transfers, [
        transfer(160, 1, 50, 1), transfer(161, 3, 1, 1), transfer(162, 1, 2, 1),
        transfer(160, 1, 2, 1),
    ])
    eq(names(r), ["ID_ALREADY_FAILED", "ID_ALREADY_FAILED", "CREATED", "ID_ALREADY_FAILED"],
       "retries after the causes are gone")
    eq(ids(c.lookup_transfers([160, 161, 162])), [162], "only the retried valid transfer")
    eq(balances(c, 50), (0, 0, 0, 0), "account 50 untouched")
    eq(balances(c, 3), (0, 50, 0, 55), "account 3")

ok("chains")
