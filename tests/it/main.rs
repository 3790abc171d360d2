//! The one integration-test binary; each module tests one part against real services.

mod audit;
mod aws_iam;
mod idp;
mod kafka;
mod ldap;
mod lockout;
mod moto;
mod pipeline;
mod process;
mod saas;
mod scim;
mod scim_server;
mod slapd;
mod support;
