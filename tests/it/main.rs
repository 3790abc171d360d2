//! The one integration-test binary; each module tests one part against real services.

mod audit;
mod kafka;
mod ldap;
mod pipeline;
mod process;
mod scim;
mod scim_server;
mod slapd;
mod support;
