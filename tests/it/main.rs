//! The one integration-test binary: each module tests one part against real services.

mod ldap;
mod slapd;
// Shared helpers written before clippy saw them; their return types are test plumbing.
#[allow(clippy::type_complexity)]
mod support;
