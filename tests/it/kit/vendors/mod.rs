//! One state model per vendor, served by the one generic fake ([`super::fake::Fake`]): each file
//! follows that vendor's documented API (paths, bodies, status codes, error shapes, token endpoint,
//! rate-limit headers) and brings its standard world, its connector config and, where the vendor is
//! in the connector contract suite, its `contract_case()`. The tests of each vendor live in the area
//! files (`idp.rs`, `keycloak_crowdstrike.rs`, `saas.rs`).
//!
//! Here: what the OAuth vendors share, the test RSA key pair and the token endpoint's refusal.

pub(crate) mod crowdstrike;
pub(crate) mod entra;
pub(crate) mod flaky;
pub(crate) mod github;
pub(crate) mod google;
pub(crate) mod keycloak;
pub(crate) mod okta;
pub(crate) mod slack;

use serde_json::{Value, json};

use super::fake::{Resp, resp};

pub(crate) const PRIVATE_PEM: &str = include_str!("../../../fixtures/idp/test-rsa-private.pem");
pub(crate) const PUBLIC_PEM: &str = include_str!("../../../fixtures/idp/test-rsa-public.pem");

/// The answer of a token endpoint refusing the client, with the reason.
pub(crate) fn invalid_client(e: String) -> Resp {
    resp(
        400,
        json!({"error": "invalid_client", "error_description": e}),
    )
}

/// Verify an RS256 assertion with the test public key; its claims.
pub(crate) fn verify_assertion(jwt: &str, aud: &str) -> Result<Value, String> {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| format!("assertion does not verify: {e}"))
}
