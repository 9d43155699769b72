//! The chart of accounts (`rafiki-admin-api.md` §9.2): which ledger account each object owns,
//! with which code and flags, and the transfer codes.

use tally_ledger::{Account, AccountFlags};
use uuid::Uuid;

/// Rafiki's `TigerBeetleAccountCode`: the ledger `code` of each kind of account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum AccountCode {
    /// A wallet address's Web Monetization receipts.
    LiquidityWebMonetization = 1,
    /// An asset's liquidity.
    LiquidityAsset = 2,
    /// A peer's liquidity (the credit line the peer has with this instance).
    LiquidityPeer = 3,
    /// An incoming payment's received funds.
    LiquidityIncoming = 4,
    /// An outgoing payment's funds.
    LiquidityOutgoing = 5,
    /// An asset's settlement account: the outside world's side of deposits and withdrawals.
    Settlement = 101,
}

/// Rafiki's `TigerBeetleTransferCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum TransferCode {
    /// A payment moving between accounts.
    Transfer = 1,
    /// Money coming in from the settlement account.
    Deposit = 2,
    /// Money going out to the settlement account.
    Withdrawal = 3,
}

/// The asset's liquidity account id: the asset's UUID, as Rafiki has it.
pub fn asset_liquidity_account_id(asset: Uuid) -> u128 {
    asset.as_u128()
}

/// The asset's settlement account id. Rafiki uses the bare ledger number, which collides between
/// instances that share a ledger (Rafiki issue #2446); Tally derives it from the asset's UUID
/// instead, with the UUID version nibble set to 8 ("custom"), which no v4 id can carry: it is
/// unique per asset and never equal to an object's or a transfer's id.
pub fn settlement_account_id(asset: Uuid) -> u128 {
    const VERSION_MASK: u128 = 0xF << 76;
    const VERSION_CUSTOM: u128 = 0x8 << 76;
    (asset.as_u128() & !VERSION_MASK) | VERSION_CUSTOM
}

/// A liquidity account: its balance (credits less debits) may never go below zero.
pub(crate) fn liquidity_account(id: u128, asset: Uuid, ledger: u32, code: AccountCode) -> Account {
    Account {
        id,
        user_data_128: asset.as_u128(),
        ledger,
        code: code as u16,
        flags: AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ..Account::default()
    }
}

/// A settlement account: debit-normal, it never holds more credits than debits.
pub(crate) fn settlement_account(asset: Uuid, ledger: u32) -> Account {
    Account {
        id: settlement_account_id(asset),
        user_data_128: asset.as_u128(),
        ledger,
        code: AccountCode::Settlement as u16,
        flags: AccountFlags(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS | AccountFlags::HISTORY),
        ..Account::default()
    }
}

/// The balance Rafiki calls liquidity: `credits_posted − debits_posted − debits_pending`
/// (pending credits never count; pending debits reduce it at once).
pub fn liquidity_of(account: &Account) -> u128 {
    account
        .credits_posted
        .saturating_sub(account.debits_posted)
        .saturating_sub(account.debits_pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settlement_ids_are_not_v4_uuids() {
        let asset = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
        let settlement = Uuid::from_u128(settlement_account_id(asset));
        assert_eq!(settlement.get_version_num(), 8);
        assert_ne!(settlement.as_u128(), asset.as_u128());
        assert_eq!(asset_liquidity_account_id(asset), asset.as_u128());
    }
}
