//! The one integration-test binary; each module tests one part against real services.

mod active_directory;
mod audit;
mod audit_mirror;
mod aws_iam;
mod fake;
mod guards;
mod http_limits;
mod identity;
mod idp;
mod kafka;
mod keycloak_crowdstrike;
mod ldap;
mod lockout;
mod moto;
mod notify;
mod okta_hook;
mod pipeline;
mod policy_watch;
mod process;
mod saas;
mod samba;
mod scim;
mod scim_server;
mod slapd;
mod ssf;
mod support;
