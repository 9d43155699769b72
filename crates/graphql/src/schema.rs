//! The schema: one query root and one mutation root, each merged from one object per area.

use async_graphql::{EmptySubscription, MergedObject, Schema};

use crate::accounting::AccountingQuery;
use crate::assets::{AssetMutation, AssetQuery};
use crate::auto_peering::AutoPeeringMutation;
use crate::interfaces::{BasePayment, LiquidityError, Model};
use crate::liquidity::LiquidityMutation;
use crate::payments::{PaymentMutation, PaymentQuery};
use crate::peers::{PeerMutation, PeerQuery};
use crate::wallet_addresses::{WalletAddressMutation, WalletAddressQuery};

/// Every query field.
#[derive(MergedObject, Default)]
pub(crate) struct Query(
    AssetQuery,
    PeerQuery,
    WalletAddressQuery,
    AccountingQuery,
    PaymentQuery,
);

/// Every mutation field.
#[derive(MergedObject, Default)]
pub(crate) struct Mutation(
    AssetMutation,
    LiquidityMutation,
    PeerMutation,
    AutoPeeringMutation,
    WalletAddressMutation,
    PaymentMutation,
);

/// The Admin API schema.
pub(crate) type AdminSchema = Schema<Query, Mutation, EmptySubscription>;

/// Rafiki's GraphQL Armor limits (§1).
pub const DEPTH_MAX: usize = 10;
/// Query complexity limit.
pub const COMPLEXITY_MAX: usize = 5000;

/// Builds the schema; `data` is what resolvers reach through the context.
pub(crate) fn schema_builder() -> async_graphql::SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(DEPTH_MAX)
        .limit_complexity(COMPLEXITY_MAX)
        .disable_suggestions()
        // BasePayment first: implementers list it before Model, as Rafiki's SDL does.
        .register_output_type::<BasePayment>()
        .register_output_type::<Model>()
        .register_output_type::<LiquidityError>()
}

/// The schema in SDL, as `tally schema` prints it.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}
