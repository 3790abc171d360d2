//! The one integration-test binary: each module tests one part against real services.

mod ldap;
mod slapd;
mod support;
