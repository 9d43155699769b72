//! What `tests/known_valid.rs` reaches that the server does not: the two schemas a request may
//! meet and the check that chooses between them.
//!
//! The property test that compares them lives outside the crate on purpose: executing the
//! schema pulls every resolver into the binary, and a unit test there made the crate's test
//! build as long as the crate's own (two minutes of CI on a 2-core machine). Here the
//! executions are compiled once, in this crate, behind functions that are neither generic nor
//! `async`.

use async_graphql::parser::parse_query;
use async_graphql::{Request, Variables};

use crate::core_handle::CoreHandle;
use crate::known_valid::Schemas;
use crate::schema::schema_builder;

/// The strict schema, the one that skips what `known_valid` shows, and that check, paired as
/// `app` pairs them.
pub struct BothSchemas(Schemas);

/// One request answered by both schemas, as JSON.
pub struct BothAnswers {
    /// The strict schema's answer.
    pub strict: serde_json::Value,
    /// The answer of the schema that skips validation.
    pub fast: serde_json::Value,
    /// Whether every error of the strict answer has a path (came from a resolver, not from
    /// validation).
    pub strict_errors_have_paths: bool,
}

impl BothSchemas {
    /// Both schemas over `core`, as `app` builds them (introspection on, no other data).
    pub fn new(core: CoreHandle) -> BothSchemas {
        BothSchemas(Schemas::new(|mode| {
            schema_builder()
                .validation_mode(mode)
                .data(core.clone())
                .finish()
        }))
    }

    /// Whether `known_valid` says strict validation passes `variables` of `query`; a query that
    /// does not parse is never known valid.
    pub fn known_valid(&self, query: &str, variables: &serde_json::Value) -> bool {
        parse_query(query).is_ok_and(|document| {
            self.0
                .input_types
                .variables_valid(&document, &Variables::from_json(variables.clone()))
        })
    }

    /// `query` with `variables` executed by both schemas, on a runtime of its own.
    ///
    /// Blocking rather than `async` on purpose: a future returned to the test crate would have
    /// every resolver compiled again there.
    pub fn answer(&self, query: &str, variables: &serde_json::Value) -> BothAnswers {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime without I/O or timers builds");
        let request = || Request::new(query).variables(Variables::from_json(variables.clone()));
        let strict = runtime.block_on(self.0.strict.execute(request()));
        let fast = runtime.block_on(self.0.known_valid.execute(request()));
        BothAnswers {
            strict_errors_have_paths: strict.errors.iter().all(|error| !error.path.is_empty()),
            strict: json(&strict),
            fast: json(&fast),
        }
    }
}

fn json(response: &async_graphql::Response) -> serde_json::Value {
    serde_json::to_value(response).expect("a GraphQL response serialises to JSON")
}
