"""All eight operations against a fresh server, with exact expected results (ledger.md §2.1, §2.5;
tigerbeetle-wire.md §5.3, §6).

    python3 operations.py ADDRESS
"""

import tigerbeetle as tb

from tbcheck import (AF, AFF, QFF, account, account_filter, address, balance_rows, balances,
                     check, created, eq, ids, names, ok, query_filter, timed_create, transfer,
                     watchdog)

watchdog(60)

with tb.ClientSync(cluster_id=0, replica_addresses=address()) as c:
    # create_accounts: four accounts in one batch; one more batch with failures.
    accounts = [
        account(1, code=10, user_data_128=100, user_data_64=7, user_data_32=1, flags=AF.HISTORY),
        account(2, code=10, user_data_64=7, flags=AF.HISTORY),
        account(3, code=20, user_data_64=8),
        account(4, ledger=800, code=10),
    ]
    r = timed_create(c.create_accounts, accounts)
    created(r, "create_accounts")
    ta = {a.id: result.timestamp for a, result in zip(accounts, r)}

    r = timed_create(c.create_accounts, [
        account(5, ledger=0),
        account(6, code=0),
        account(0),
        account(2**128 - 1),
        account(7, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS),
        account(8, debits_posted=1),
        account(9, timestamp=1),
        account(10, flags=1 << 6),
    ])
    eq(names(r), ["LEDGER_MUST_NOT_BE_ZERO", "CODE_MUST_NOT_BE_ZERO", "ID_MUST_NOT_BE_ZERO",
                  "ID_MUST_NOT_BE_INT_MAX", "FLAGS_ARE_MUTUALLY_EXCLUSIVE",
                  "DEBITS_POSTED_MUST_BE_ZERO", "TIMESTAMP_MUST_BE_ZERO", "RESERVED_FLAG"],
       "create_accounts failures")
    check(r[0].timestamp > ta[4], "failed events consume later timestamps")

    # lookup_accounts: request order, missing ids omitted, stored timestamps.
    found = c.lookup_accounts([1, 99, 2, 3, 5, 4])
    eq(ids(found), [1, 2, 3, 4], "lookup_accounts ids")
    for a, f in zip(accounts, found):
        eq((f.ledger, f.code, f.flags, f.user_data_128, f.user_data_64, f.user_data_32,
            f.timestamp),
           (a.ledger, a.code, a.flags, a.user_data_128, a.user_data_64, a.user_data_32,
            ta[a.id]), f"account {a.id}")
        eq((f.debits_pending, f.debits_posted, f.credits_pending, f.credits_posted),
           (0, 0, 0, 0), f"account {a.id} balances")
    eq(c.lookup_accounts([]), [], "lookup_accounts([])")
    eq(c.lookup_accounts([42, 43]), [], "lookup_accounts of missing ids")

    # create_transfers: four created, two failing.
    transfers = [
        transfer(10, 1, 2, 100, code=1, user_data_64=5),
        transfer(11, 1, 3, 30, code=2, user_data_64=6),
        transfer(12, 2, 1, 20, code=1, user_data_64=5, user_data_128=77),
        transfer(13, 3, 2, 7, code=2, user_data_32=9),
        transfer(14, 1, 4, 1),
        transfer(15, 1, 999, 1),
        transfer(16, 1, 1, 1),
        transfer(17, 1, 2, 1, ledger=0),
        transfer(18, 1, 2, 1, timeout=5),
        transfer(19, 1, 2, 1, ledger=800),
    ]
    r = timed_create(c.create_transfers, transfers)
    eq(names(r), ["CREATED"] * 4 + ["ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER",
                                    "CREDIT_ACCOUNT_NOT_FOUND", "ACCOUNTS_MUST_BE_DIFFERENT",
                                    "LEDGER_MUST_NOT_BE_ZERO",
                                    "TIMEOUT_RESERVED_FOR_PENDING_TRANSFER",
                                    "TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS"],
       "create_transfers statuses")
    tt = {t.id: result.timestamp for t, result in zip(transfers, r)}
    check(min(tt.values()) > max(ta.values()), "transfers are stamped after the accounts")

    eq(balances(c, 1), (0, 130, 0, 20), "account 1 balances")
    eq(balances(c, 2), (0, 20, 0, 107), "account 2 balances")
    eq(balances(c, 3), (0, 7, 0, 30), "account 3 balances")
    eq(balances(c, 4), (0, 0, 0, 0), "account 4 balances")

    # lookup_transfers: request order, missing and failed ids omitted, stored fields.
    found = c.lookup_transfers([10, 14, 11, 15, 12, 13, 999])
    eq(ids(found), [10, 11, 12, 13], "lookup_transfers ids")
    for t, f in zip(transfers, found):
        want = tb.Transfer(id=t.id, debit_account_id=t.debit_account_id,
                           credit_account_id=t.credit_account_id, amount=t.amount,
                           pending_id=0, user_data_128=t.user_data_128,
                           user_data_64=t.user_data_64, user_data_32=t.user_data_32, timeout=0,
                           ledger=t.ledger, code=t.code, flags=t.flags, timestamp=tt[t.id])
        eq(f, want, f"transfer {t.id}")
    eq(c.lookup_transfers([]), [], "lookup_transfers([])")

    # get_account_transfers: direction flags, order, limit, ranges, equality filters.
    def gat(**kw):
        return ids(c.get_account_transfers(account_filter(**kw)))

    eq(gat(account_id=1), [10, 11, 12], "transfers of 1")
    eq(gat(account_id=1, flags=AFF.DEBITS), [10, 11], "debits of 1")
    eq(gat(account_id=1, flags=AFF.CREDITS), [12], "credits of 1")
    eq(gat(account_id=1, flags=AFF.DEBITS | AFF.CREDITS | AFF.REVERSED), [12, 11, 10],
       "transfers of 1 reversed")
    eq(gat(account_id=1, limit=2), [10, 11], "transfers of 1, limit 2")
    eq(gat(account_id=1, limit=1, flags=AFF.DEBITS | AFF.CREDITS | AFF.REVERSED), [12],
       "transfers of 1 reversed, limit 1")
    eq(gat(account_id=1, timestamp_min=tt[11]), [11, 12], "timestamp_min")
    eq(gat(account_id=1, timestamp_max=tt[11]), [10, 11], "timestamp_max")
    eq(gat(account_id=1, timestamp_min=tt[11], timestamp_max=tt[11]), [11], "min = max")
    eq(gat(account_id=1, timestamp_min=tt[10] + 1, timestamp_max=tt[12] - 1,
           flags=AFF.DEBITS | AFF.CREDITS | AFF.REVERSED), [11], "open range reversed")
    eq(gat(account_id=1, code=1), [10, 12], "code filter")
    eq(gat(account_id=1, user_data_64=5), [10, 12], "user_data_64 filter")
    eq(gat(account_id=1, user_data_128=77), [12], "user_data_128 filter")
    eq(gat(account_id=2, user_data_32=9), [13], "user_data_32 filter")
    eq(gat(account_id=1, user_data_64=5, code=2), [], "no transfer matches both")
    eq(gat(account_id=3), [11, 13], "transfers of a non-history account")
    eq(gat(account_id=4), [], "account without transfers")
    # Invalid filters give empty results, never errors.
    eq(gat(account_id=1, flags=AFF.NONE), [], "neither debits nor credits")
    eq(gat(account_id=1, limit=0), [], "limit 0")
    eq(gat(account_id=1, timestamp_min=tt[12], timestamp_max=tt[10]), [], "min > max")
    eq(gat(account_id=999), [], "unknown account")
    eq(gat(account_id=0), [], "account id 0")
    full = c.get_account_transfers(account_filter(1, limit=1))
    eq(full, [f for f in found if f.id == 10], "get_account_transfers returns whole transfers")

    # get_account_balances: one row per transfer of a history account, balances after it.
    def gab(**kw):
        return balance_rows(c.get_account_balances(account_filter(**kw)))

    rows_1 = [(0, 100, 0, 0, tt[10]), (0, 130, 0, 0, tt[11]), (0, 130, 0, 20, tt[12])]
    eq(gab(account_id=1), rows_1, "balances of 1")
    eq(gab(account_id=1, flags=AFF.DEBITS), rows_1[:2], "debit balances of 1")
    eq(gab(account_id=1, flags=AFF.CREDITS), rows_1[2:], "credit balances of 1")
    eq(gab(account_id=1, limit=2, flags=AFF.DEBITS | AFF.CREDITS | AFF.REVERSED),
       [rows_1[2], rows_1[1]], "balances of 1 reversed, limit 2")
    eq(gab(account_id=1, timestamp_min=tt[11], timestamp_max=tt[11]), [rows_1[1]],
       "balances of 1 in a range")
    eq(gab(account_id=2),
       [(0, 0, 0, 100, tt[10]), (0, 20, 0, 100, tt[12]), (0, 20, 0, 107, tt[13])],
       "balances of 2")
    eq(gab(account_id=3), [], "balances of a non-history account")
    eq(gab(account_id=1, limit=0), [], "balances with limit 0")
    eq(gab(account_id=999), [], "balances of an unknown account")

    # query_accounts: AND of predicates, order, limit, ranges.
    def qa(**kw):
        return ids(c.query_accounts(query_filter(**kw)))

    eq(qa(user_data_64=7), [1, 2], "accounts with user_data_64 7")
    eq(qa(ledger=700, code=10), [1, 2], "accounts of ledger 700 code 10")
    eq(qa(ledger=800), [4], "accounts of ledger 800")
    eq(qa(code=20), [3], "accounts with code 20")
    eq(qa(ledger=700, flags=QFF.REVERSED), [3, 2, 1], "ledger 700 reversed")
    eq(qa(ledger=700, limit=1), [1], "ledger 700 limit 1")
    eq(qa(ledger=700, limit=2, flags=QFF.REVERSED), [3, 2], "ledger 700 reversed limit 2")
    eq(qa(ledger=700, timestamp_min=ta[2]), [2, 3], "timestamp_min")
    eq(qa(timestamp_min=ta[2], timestamp_max=ta[3]), [2, 3], "timestamp range")
    eq(qa(timestamp_max=ta[1]), [1], "timestamp_max")
    eq(qa(user_data_128=100), [1], "user_data_128")
    eq(qa(user_data_32=1), [1], "user_data_32")
    eq(qa(user_data_64=7, code=20), [], "no account matches both")
    eq(qa(), [1, 2, 3, 4], "no predicate: all accounts")
    eq(qa(limit=0), [], "limit 0")
    eq(qa(timestamp_min=ta[3], timestamp_max=ta[2]), [], "min > max")
    whole = c.query_accounts(query_filter(user_data_128=100))
    eq(whole, c.lookup_accounts([1]), "query_accounts returns whole accounts")

    # query_transfers.
    def qt(**kw):
        return ids(c.query_transfers(query_filter(**kw)))

    eq(qt(ledger=700), [10, 11, 12, 13], "transfers of ledger 700")
    eq(qt(code=2), [11, 13], "transfers with code 2")
    eq(qt(code=1, flags=QFF.REVERSED), [12, 10], "code 1 reversed")
    eq(qt(user_data_64=5), [10, 12], "user_data_64 5")
    eq(qt(user_data_128=77), [12], "user_data_128 77")
    eq(qt(user_data_32=9), [13], "user_data_32 9")
    eq(qt(limit=2, flags=QFF.REVERSED), [13, 12], "reversed limit 2")
    eq(qt(timestamp_min=tt[11], timestamp_max=tt[12]), [11, 12], "timestamp range")
    eq(qt(timestamp_min=tt[13] + 1), [], "range after the last transfer")
    eq(qt(timestamp_min=tt[12], timestamp_max=tt[11]), [], "min > max")
    eq(qt(ledger=800), [], "failed transfers are not stored")
    eq(qt(limit=0), [], "limit 0")
    eq(c.query_transfers(query_filter(user_data_128=77)), c.lookup_transfers([12]),
       "query_transfers returns whole transfers")

ok("operations")
