//! Parsed GraphQL documents, kept by their query text.
//!
//! Clients send the same few documents over and over with new variables (the Admin UI, scripts,
//! the bench), and parsing one is about a tenth of a mutation's CPU (pest, with its stack
//! checks and allocations). A document that parsed once is handed to async-graphql already
//! parsed; validation, the depth and complexity limits and execution still run for every
//! request, so the answer is the same as without the cache.
//!
//! Bounded: at most `DOCUMENTS_MAX` documents of at most `QUERY_BYTES_MAX` bytes each, so a
//! client sending ever new documents costs a bounded amount of memory. When full, the cache is
//! emptied and refilled by what is sent next (simple, and a steady set of documents is back
//! within one request each).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;

use crate::bounded_map::BoundedMap;

/// Documents kept at most.
pub(crate) const DOCUMENTS_MAX: usize = 512;
/// Longer query texts are parsed every time rather than kept.
pub(crate) const QUERY_BYTES_MAX: usize = 16 * 1024;

/// A parsed document, and whether it passed every validation rule once.
pub(crate) struct CachedDocument {
    pub(crate) document: ExecutableDocument,
    rules_passed: AtomicBool,
}

impl CachedDocument {
    /// Whether a request of this document was answered without errors.
    pub(crate) fn rules_passed(&self) -> bool {
        self.rules_passed.load(Ordering::Relaxed)
    }

    /// A request of this document was answered without errors: the document passes every
    /// validation rule (the variables' values aside).
    pub(crate) fn rules_pass(&self) {
        self.rules_passed.store(true, Ordering::Relaxed);
    }
}

/// Query text → its parsed document.
pub(crate) struct DocumentCache {
    documents: BoundedMap<Box<str>, Arc<CachedDocument>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: BoundedMap::new(DOCUMENTS_MAX),
        }
    }
}

impl DocumentCache {
    /// Sets `request`'s parsed document from the cache, parsing and keeping it on a miss, and
    /// returns the cache's entry. A query that does not parse is left for async-graphql to
    /// parse and report.
    pub(crate) fn prepare(
        &self,
        request: &mut async_graphql::Request,
    ) -> Option<Arc<CachedDocument>> {
        if request.query.len() > QUERY_BYTES_MAX {
            return None;
        }
        if let Some(cached) = self.documents.get(request.query.as_str()) {
            request.set_parsed_query(cached.document.clone());
            return Some(cached);
        }
        let document = async_graphql::parser::parse_query(&request.query).ok()?;
        let cached = Arc::new(CachedDocument {
            document: document.clone(),
            rules_passed: AtomicBool::new(false),
        });
        self.documents
            .insert_all([(request.query.as_str().into(), cached.clone())].into_iter());
        request.set_parsed_query(document);
        Some(cached)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.documents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_parsed_documents_and_stays_bounded() {
        let cache = DocumentCache::default();
        let mut request = async_graphql::Request::new("{ assets { edges { cursor } } }");
        cache.prepare(&mut request);
        assert!(request.parsed_query().is_ok());
        assert_eq!(cache.len(), 1);

        let mut bad = async_graphql::Request::new("{ assets {");
        cache.prepare(&mut bad);
        assert_eq!(cache.len(), 1, "a document that does not parse is not kept");

        let mut long = async_graphql::Request::new(format!(
            "{{ assets {{ edges {{ cursor }} }} }}{}",
            " ".repeat(QUERY_BYTES_MAX)
        ));
        cache.prepare(&mut long);
        assert_eq!(cache.len(), 1, "a long document is not kept");

        for n in 0..DOCUMENTS_MAX + 10 {
            let mut request = async_graphql::Request::new(format!(
                "query Q{n} {{ assets {{ edges {{ cursor }} }} }}"
            ));
            cache.prepare(&mut request);
            assert!(cache.len() <= DOCUMENTS_MAX);
        }
    }
}
