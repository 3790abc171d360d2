//! LDAP result codes and transport failures, and how each maps to an [`Outcome`]: what retries,
//! what fails, and what an operator should do about it.

use std::path::PathBuf;

use crate::connectors::Outcome;

/// Why an LDAP step failed. Mapped to an [`Outcome`] by [`LdapError::outcome`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum LdapError {
    /// The server answered with a non-success result code.
    #[error("LDAP {op} on `{target}` failed: {code} ({rc}){}", if text.is_empty() { String::new() } else { format!(": {text}") })]
    Result {
        op: &'static str,
        target: String,
        rc: u32,
        code: &'static str,
        text: String,
    },
    /// Connecting, TLS, or the request itself failed before any answer.
    #[error("LDAP {op} on `{target}` failed: {source}")]
    Transport {
        op: &'static str,
        target: String,
        #[source]
        source: ldap3::LdapError,
    },
    /// The subject matched several entries.
    #[error(
        "subject `{subject}` matches {count} entries under `{base}` (filter `{filter}`); refusing to act on an ambiguous subject"
    )]
    Ambiguous {
        subject: String,
        count: usize,
        base: String,
        filter: String,
    },
    /// The subject was refused before any filter was built (control characters, too long).
    #[error("subject refused: {0}")]
    Subject(#[from] crate::identity::SubjectError),
    /// An attribute held something we cannot interpret.
    #[error("entry `{dn}` has an unreadable {attr} value `{value}`")]
    BadValue {
        dn: String,
        attr: &'static str,
        value: String,
    },
}

/// Why the configured CA file or user filter cannot be used; found when the connector is built or
/// the config validated, reported as a problem at its key.
#[derive(Debug, thiserror::Error)]
pub(super) enum LdapConfigError {
    #[error("cannot read CA file `{}`: {source}", path.display())]
    CaUnreadable {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file `{}` is not valid PEM: {source}", path.display())]
    CaNotPem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file `{}` holds an unusable certificate: {source}", path.display())]
    CaUnusable {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("CA file `{}` holds no certificate", path.display())]
    CaEmpty { path: PathBuf },
    #[error("TLS setup failed: {0}")]
    Tls(rustls::Error),
    #[error(
        "`{0}` uses none of {{username}}, {{email}}, {{subject}}: it would match the same entries for every subject"
    )]
    FilterMatchesAll(String),
    #[error("`{0}` has an unknown placeholder; use {{username}}, {{email}} or {{subject}}")]
    FilterPlaceholder(String),
    #[error("`{0}` is not a valid LDAP filter (RFC 4515), e.g. `(uid={{username}})`")]
    FilterSyntax(String),
}

/// RFC 4511 Appendix A result code names (the ones worth naming).
pub(super) fn rc_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        10 => "referral",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        65 => "objectClassViolation",
        68 => "entryAlreadyExists",
        80 => "other",
        _ => "error",
    }
}

impl LdapError {
    pub(super) fn from_ldap(op: &'static str, target: &str, e: ldap3::LdapError) -> Self {
        match e {
            ldap3::LdapError::LdapResult { result } => LdapError::Result {
                op,
                target: target.to_string(),
                rc: result.rc,
                code: rc_name(result.rc),
                text: result.text,
            },
            source => LdapError::Transport {
                op,
                target: target.to_string(),
                source,
            },
        }
    }

    /// The result code, when the server answered.
    pub(crate) fn rc(&self) -> Option<u32> {
        match self {
            LdapError::Result { rc, .. } => Some(*rc),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: lost connections, timeouts, a busy or unavailable
    /// server, a concurrent change. Credentials, permissions, TLS trust and bad config do not heal.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            LdapError::Result { rc, .. } => matches!(rc, 3 | 16 | 51 | 52 | 80),
            LdapError::Transport { source, .. } => match source {
                ldap3::LdapError::Io { source } => {
                    // rustls reports certificate and handshake failures as InvalidData.
                    source.kind() != std::io::ErrorKind::InvalidData
                }
                ldap3::LdapError::Timeout { .. }
                | ldap3::LdapError::OpSend { .. }
                | ldap3::LdapError::ResultRecv { .. }
                | ldap3::LdapError::IdScrubSend { .. }
                | ldap3::LdapError::MiscSend { .. }
                | ldap3::LdapError::EndOfStream => true,
                _ => false,
            },
            LdapError::Ambiguous { .. } | LdapError::BadValue { .. } | LdapError::Subject(_) => {
                false
            }
        }
    }

    /// What an operator should do about a terminal failure.
    pub(crate) fn fix(&self) -> Option<&'static str> {
        match self {
            LdapError::Result { rc, .. } => match rc {
                49 => Some(
                    "the server refused bind_dn/bind_password (invalidCredentials): check both, and that the service account is not itself locked",
                ),
                50 => Some(
                    "the bind DN lacks permission: grant the ACLs listed in docs/connectors/ldap.md",
                ),
                8 | 13 | 48 => Some(
                    "the server requires a protected connection: use an ldaps:// url or starttls = true",
                ),
                10 => Some(
                    "the server referred elsewhere: point url at a server that holds base_dn (for AD, a DC of that domain)",
                ),
                32 => Some("base_dn or group_base_dn does not exist on this server"),
                4 => Some("the search hit a size limit: narrow base_dn or user_filter"),
                65 => Some(
                    "the group would be left without a required member (groupOfNames needs one): add a placeholder member",
                ),
                _ => None,
            },
            LdapError::Transport { source, .. } => match source {
                ldap3::LdapError::Io { source }
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    Some(
                        "TLS handshake failed: make the server certificate trusted (system store or SSL_CERT_FILE) and its name match the url host",
                    )
                }
                ldap3::LdapError::UrlParsing { .. } | ldap3::LdapError::UnknownScheme(_) => {
                    Some("fix url: ldaps://host:636 or ldap://host:389")
                }
                _ => None,
            },
            LdapError::Ambiguous { .. } => Some(
                "make user_filter match exactly one entry (e.g. search a unique attribute), or name the subject precisely",
            ),
            LdapError::BadValue { .. } | LdapError::Subject(_) => None,
        }
    }

    /// The outcome the executor should see.
    pub(crate) fn outcome(&self) -> Outcome {
        let reason = match self.fix() {
            Some(fix) => format!("{self}; fix: {fix}"),
            None => self.to_string(),
        };
        if self.is_retryable() {
            Outcome::Retry {
                after: None,
                reason,
            }
        } else {
            Outcome::Failed { reason }
        }
    }
}

impl LdapError {
    pub(super) fn outcome_reason(&self) -> String {
        match self.outcome() {
            Outcome::Failed { reason } | Outcome::Retry { reason, .. } => reason,
            _ => self.to_string(),
        }
    }
}
