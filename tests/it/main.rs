//! The one integration-test binary; each module tests one part against real services.

mod audit;
mod audit_mirror;
mod aws_iam;
mod idp;
mod kafka;
mod ldap;
mod lockout;
mod moto;
mod notify;
mod pipeline;
mod policy_watch;
mod process;
mod scim;
mod scim_server;
mod slapd;
mod support;
