//! Wallet address keys (`rafiki-admin-api.md` §7.4): the Ed25519 public keys that verify the
//! Open Payments HTTP signatures of a wallet address's clients. A key is never deleted; revoking
//! it frees its `kid` for a new key of the same address.

use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::command::{Outcome, Success};
use crate::error::WalletAddressKeyError;
use crate::page::{page, Page, PageRequest};
use crate::state::Payments;

/// Rafiki's `Alg`: the one signature algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    /// `EdDSA`.
    #[default]
    EdDsa,
}

/// Rafiki's `Kty`: the one key type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kty {
    /// `OKP` (octet key pair).
    #[default]
    Okp,
}

/// Rafiki's `Crv`: the one curve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Crv {
    /// `Ed25519`.
    #[default]
    Ed25519,
}

/// A public key as a JWK. Rafiki stores only `kid` and `x` and always answers
/// `EdDSA`/`OKP`/`Ed25519`; the enums have one value each, so the same holds here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// The key id the client names in its signatures; not validated, as in Rafiki.
    pub kid: String,
    /// The base64url public key; not validated, as in Rafiki.
    pub x: String,
    /// Signature algorithm.
    pub alg: Alg,
    /// Key type.
    pub kty: Kty,
    /// Curve.
    pub crv: Crv,
}

/// One key of a wallet address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletAddressKey {
    /// Chosen by the front (the row id, not the `kid`).
    pub id: Uuid,
    /// The wallet address it belongs to.
    pub wallet_address_id: Uuid,
    /// The public key.
    pub jwk: Jwk,
    /// Set by `revokeWalletAddressKey`; never cleared.
    pub revoked: bool,
    /// Core timestamp (ns since the Unix epoch).
    pub created_at: u64,
}

/// `createWalletAddressKey`'s input, with the id the front chose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWalletAddressKey {
    /// The new key's id.
    pub id: Uuid,
    /// The wallet address; `None` when the client's id is not a UUID (then it is unknown).
    pub wallet_address_id: Option<Uuid>,
    /// The public key.
    pub jwk: Jwk,
}

/// `revokeWalletAddressKey`'s input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeWalletAddressKey {
    /// The key's id; `None` when the client's id is not a UUID (then it is unknown).
    pub id: Option<Uuid>,
}

/// The keys, with their indexes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WalletAddressKeys {
    keys: OrdMap<Uuid, WalletAddressKey>,
    /// `(wallet address, creation timestamp)` → key, for each address's key list.
    created: OrdMap<(Uuid, u64), Uuid>,
    /// `(wallet address, kid)` → the key not revoked (Rafiki's partial unique index).
    active: OrdMap<(Uuid, String), Uuid>,
}

impl Payments {
    /// `createWalletAddressKey`. Rafiki does not look the address up first: an unknown one
    /// fails the insert's foreign key and answers INTERNAL_SERVER_ERROR (`UnknownWalletAddress`
    /// here). The unique index is checked before the foreign key, as Postgres does, though an
    /// unknown address cannot hold a key anyway.
    pub(crate) fn execute_create_wallet_address_key(
        &mut self,
        create: &CreateWalletAddressKey,
        timestamp: u64,
    ) -> Outcome {
        let keys = &mut self.wallet_address_keys;
        if let Some(wallet_address_id) = create.wallet_address_id {
            if keys
                .active
                .contains_key(&(wallet_address_id, create.jwk.kid.clone()))
            {
                return Err(WalletAddressKeyError::DuplicateKey.into());
            }
        }
        let wallet_address_id = create
            .wallet_address_id
            .filter(|id| self.wallet_addresses.contains(*id))
            .ok_or(WalletAddressKeyError::UnknownWalletAddress)?;
        assert!(
            !keys.keys.contains_key(&create.id),
            "the front chose a fresh id"
        );
        let key = WalletAddressKey {
            id: create.id,
            wallet_address_id,
            jwk: create.jwk.clone(),
            revoked: false,
            created_at: timestamp,
        };
        keys.active
            .insert((wallet_address_id, key.jwk.kid.clone()), key.id);
        keys.created.insert((wallet_address_id, timestamp), key.id);
        keys.keys.insert(key.id, key.clone());
        Ok(Success::WalletAddressKey(key))
    }

    /// `revokeWalletAddressKey`: idempotent, a revoked key is returned as it is.
    pub(crate) fn execute_revoke_wallet_address_key(
        &mut self,
        revoke: &RevokeWalletAddressKey,
    ) -> Outcome {
        let keys = &mut self.wallet_address_keys;
        let key = revoke
            .id
            .and_then(|id| keys.keys.get_mut(&id))
            .ok_or(WalletAddressKeyError::UnknownKey)?;
        if !key.revoked {
            key.revoked = true;
            let removed = keys
                .active
                .remove(&(key.wallet_address_id, key.jwk.kid.clone()));
            assert_eq!(
                removed,
                Some(key.id),
                "a key not revoked is indexed by its kid"
            );
        }
        Ok(Success::WalletAddressKey(key.clone()))
    }

    /// The key with this id, revoked or not.
    pub fn wallet_address_key(&self, id: Uuid) -> Option<&WalletAddressKey> {
        self.wallet_address_keys.keys.get(&id)
    }

    /// The wallet address's key with this `kid` that is not revoked (what verifies a signature).
    pub fn wallet_address_key_by_kid(
        &self,
        wallet_address_id: Uuid,
        kid: &str,
    ) -> Option<&WalletAddressKey> {
        self.wallet_address_keys
            .active
            .get(&(wallet_address_id, kid.to_owned()))
            .map(|id| &self.wallet_address_keys.keys[id])
    }

    /// A page of a wallet address's keys, revoked ones included (`WalletAddress.walletAddressKeys`).
    pub fn wallet_address_keys_page(
        &self,
        wallet_address_id: Uuid,
        request: &PageRequest,
    ) -> (Vec<&WalletAddressKey>, Page) {
        let keys = &self.wallet_address_keys;
        let result = page(
            &keys.created,
            (wallet_address_id, 0),
            (wallet_address_id, u64::MAX),
            |id| {
                keys.keys
                    .get(&id)
                    .map(|key| (key.wallet_address_id, key.created_at))
            },
            request,
        );
        (result.ids.iter().map(|id| &keys.keys[id]).collect(), result)
    }
}
