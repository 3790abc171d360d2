//! The LDAP transport: TLS trust, connecting and binding, and the search and modify requests every
//! operation is built from.

use std::sync::Arc;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};
use secrecy::ExposeSecret;
use tracing::debug;

use super::{LdapConfigError, LdapConnector, LdapError};

/// A rustls client config trusting exactly the CA certificates in `file`. The ring provider is named
/// explicitly so this never depends on which provider happens to be the process default.
pub(super) fn tls_config_trusting(
    file: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, LdapConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let path = || file.to_path_buf();
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(file).map_err(|source| LdapConfigError::CaUnreadable {
            path: path(),
            source,
        })?;
    for cert in certs {
        let cert = cert.map_err(|source| LdapConfigError::CaNotPem {
            path: path(),
            source,
        })?;
        roots
            .add(cert)
            .map_err(|source| LdapConfigError::CaUnusable {
                path: path(),
                source,
            })?;
    }
    if roots.is_empty() {
        return Err(LdapConfigError::CaEmpty { path: path() });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(LdapConfigError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl LdapConnector {
    /// Open a connection and bind as the service account. One connection per operation: containment
    /// is rare and latency-tolerant, and a fresh bind never acts on a half-broken pooled connection.
    pub(super) async fn session(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls_config {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| LdapError::from_ldap("connect", &self.cfg.url, e))?;
        let url = self.cfg.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(url = %url, error = %e, "LDAP connection ended with an error");
            }
        });
        ldap.with_timeout(self.cfg.timeout)
            .simple_bind(&self.cfg.bind_dn, self.password.expose_secret())
            .await
            .and_then(|r| r.success())
            .map_err(|e| LdapError::from_ldap("bind", &self.cfg.bind_dn, e))?;
        Ok(ldap)
    }

    /// Search a subtree; continuation references (AD's referrals to other partitions) are skipped.
    pub(super) async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let (entries, _) = ldap
            .with_timeout(self.cfg.timeout)
            .search(base, scope, filter, attrs)
            .await
            .and_then(|r| r.success())
            .map_err(|e| LdapError::from_ldap("search", base, e))?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect())
    }

    pub(super) async fn modify(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        mods: Vec<Mod<String>>,
    ) -> Result<(), LdapError> {
        ldap.with_timeout(self.cfg.timeout)
            .modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| LdapError::from_ldap("modify", dn, e))
    }
}
