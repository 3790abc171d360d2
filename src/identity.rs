//! Identity resolution: one spelling per account, so that every layer that compares subjects —
//! idempotency keys, coalescing, protected-subject guards, the blast-radius count — sees `CORP\jdoe`,
//! `corp\JDoe`, `jdoe@corp.com` and `JDoe@Corp.Example` as the one account `jdoe@corp.example`.
//!
//! Two layers resolve a subject, and they combine in this order:
//!
//! 1. **Here, offline, at planning** ([`Identity::canonical`]): a pure rewrite of the *name* through the
//!    configured `[identity] domain_aliases` (NetBIOS domains and extra email domains → the canonical
//!    email domain). It costs nothing per alert and decides the action's `subject`, so two alerts that
//!    name one account in two spellings produce one idempotency key per (connector, operation) and the
//!    second coalesces into the first. Per-system ids (`00u1abc…`, object GUIDs) and bare usernames are
//!    left exactly as they are: no offline rule can tell whose they are.
//! 2. **In each connector, online, at execution** (the spec's `lookup`, LDAP's search, IAM's user
//!    name): the canonical subject is resolved to that system's own id when the action runs. "No such
//!    user here" is `not_found` there and the other connectors still act.
//!
//! The alert and its audit records keep the spelling the vendor used; only actions carry the
//! canonical form.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::alert::Subject;
use crate::config::Problem;

/// `[identity]` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Alias → canonical email domain. Keys are NetBIOS / down-level domains (`CORP`, as in
    /// `CORP\jdoe`) or extra email domains (`corp.com`); values are the domain accounts are known by
    /// everywhere else (`corp.example`). Matched case-insensitively.
    pub domain_aliases: BTreeMap<String, String>,
    /// The email domain bare usernames belong to (`corp.example`), **for the guards only**: with it,
    /// protecting `admin@corp.example` also protects an alert's bare `admin`, and protecting a bare
    /// `admin` protects `admin@corp.example`. Actions keep the bare name — a bare name may be an IAM
    /// user or an LDAP `uid` that an email spelling would not find — so this never changes what a
    /// connector is asked to look up; it only widens what counts as protected.
    pub default_domain: Option<String>,
}

impl IdentityConfig {
    pub fn validate(&self, path: &str, problems: &mut Vec<Problem>) {
        if let Some(d) = &self.default_domain {
            if !is_email_domain(d) {
                problems.push(Problem::new(
                    format!("{path}.default_domain"),
                    format!(
                        "`{d}` is not an email domain (expected something like `corp.example`)"
                    ),
                ));
            }
        }
        for (alias, canonical) in &self.domain_aliases {
            let at = format!("{path}.domain_aliases.{alias}");
            if alias.trim().is_empty() || alias.contains(['@', '\\', ' ']) {
                problems.push(Problem::new(
                    &at,
                    "the alias must be a bare domain (`CORP` or `corp.com`), without `@`, `\\` or spaces",
                ));
            }
            if !is_email_domain(canonical) {
                problems.push(Problem::new(
                    &at,
                    format!(
                        "`{canonical}` is not an email domain (expected something like `corp.example`)"
                    ),
                ));
            }
            if self
                .domain_aliases
                .keys()
                .any(|k| k != alias && k.eq_ignore_ascii_case(alias))
            {
                problems.push(Problem::new(
                    &at,
                    "listed twice with different case; aliases are case-insensitive",
                ));
            }
        }
    }
}

/// A person's name as compared for identity — an API token's name, the requester and the approver
/// of a held action: trimmed and lower-cased. `[api]` validation refuses two tokens whose names are
/// equal under it, and approvals compare requester and approver with it, so `Alice` cannot approve
/// what `alice ` asked for.
pub fn normalize_token_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// `corp.example`: no `@`, `\\` or spaces, at least one dot.
fn is_email_domain(d: &str) -> bool {
    let d = d.trim();
    !d.is_empty() && !d.contains(['@', '\\', ' ']) && d.contains('.')
}

/// The compiled alias table. Cheap to clone; `Default` knows no aliases (it still lower-cases emails).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Lower-cased alias → lower-cased canonical domain.
    aliases: BTreeMap<String, String>,
    /// Lower-cased `[identity] default_domain`, mapped through the aliases.
    default_domain: Option<String>,
}

impl Identity {
    pub fn new(cfg: &IdentityConfig) -> Self {
        let mut id = Self {
            aliases: cfg
                .domain_aliases
                .iter()
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_lowercase()))
                .collect(),
            default_domain: None,
        };
        id.default_domain = cfg.default_domain.as_deref().map(|d| id.domain(d));
        id
    }

    /// The spellings the guards compare for `subject`: its canonical form and, for a bare username
    /// when `default_domain` is set, `username@default_domain` too. Never used to name an action.
    pub fn guard_forms(&self, subject: &str) -> Vec<String> {
        let canonical = self.canonical(subject);
        let bare = !canonical.is_empty() && !canonical.contains(['@', '\\']);
        match &self.default_domain {
            Some(d) if bare => {
                let qualified = format!("{}@{d}", canonical.to_lowercase());
                vec![canonical, qualified]
            }
            _ => vec![canonical],
        }
    }

    /// The canonical domain for `domain` (itself, lower-cased, when it is no alias).
    fn domain(&self, domain: &str) -> String {
        let d = domain.trim().to_lowercase();
        self.aliases.get(&d).cloned().unwrap_or(d)
    }

    /// Whether `domain` is a configured alias (or a canonical domain itself).
    fn knows(&self, domain: &str) -> bool {
        let d = domain.trim().to_lowercase();
        self.aliases.contains_key(&d) || self.aliases.values().any(|v| *v == d)
    }

    /// One spelling per account:
    /// - `user@domain` (email or UPN) → lower-cased, the domain mapped through the aliases;
    /// - `DOMAIN\user` → `user@<canonical>` when `DOMAIN` is a configured alias, else unchanged
    ///   (an unknown down-level domain cannot be turned into an email safely);
    /// - anything else (usernames, per-system ids) → trimmed, case kept.
    pub fn canonical(&self, subject: &str) -> String {
        let s = subject.trim();
        if let Some((domain, user)) = s.split_once('\\') {
            let (domain, user) = (domain.trim(), user.trim());
            if !user.is_empty() && !user.contains('@') && self.knows(domain) {
                return format!("{}@{}", user.to_lowercase(), self.domain(domain));
            }
            return s.to_string();
        }
        match s.rsplit_once('@') {
            Some((user, domain)) if !user.is_empty() && !domain.is_empty() => {
                format!("{}@{}", user.to_lowercase(), self.domain(domain))
            }
            _ if s.contains('@') => s.to_lowercase(),
            _ => s.to_string(),
        }
    }

    /// The canonical subject for a policy decision about `alert_subjects`.
    ///
    /// Policies usually name a subject by its email, else its bare username (the starter policy
    /// does). A bare username loses the domain the alert gave (`CORP\jdoe` → `jdoe`), so when the
    /// decision's name is exactly the username of one of the alert's subjects, that subject's full
    /// identity is used: its email if it has one, else `username@<canonical>` when its domain is a
    /// configured alias. Everything else goes through [`canonical`](Self::canonical).
    pub fn resolve(&self, named: &str, alert_subjects: &[Subject]) -> String {
        let n = named.trim();
        if !n.is_empty() && !n.contains(['@', '\\']) {
            let mut matches = alert_subjects.iter().filter(|s| {
                s.username
                    .as_deref()
                    .is_some_and(|u| u.trim().eq_ignore_ascii_case(n))
            });
            if let (Some(s), None) = (matches.next(), matches.next()) {
                if let Some(email) = s.email.as_deref().filter(|e| e.contains('@')) {
                    return self.canonical(email);
                }
                if let Some(domain) = s.domain.as_deref().filter(|d| self.knows(d)) {
                    return self.canonical(&format!("{domain}\\{n}"));
                }
            }
        }
        self.canonical(named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corp() -> Identity {
        Identity::new(&IdentityConfig {
            domain_aliases: BTreeMap::from([
                ("CORP".to_string(), "corp.example".to_string()),
                ("corp.com".to_string(), "Corp.Example".to_string()),
            ]),
            default_domain: None,
        })
    }

    #[test]
    fn every_spelling_of_one_account_is_one_subject() {
        let id = corp();
        for s in [
            r"CORP\jdoe",
            r"corp\JDoe",
            " jdoe@corp.com ",
            "JDoe@Corp.Example",
            r"Corp\ jdoe ",
        ] {
            assert_eq!(id.canonical(s), "jdoe@corp.example", "{s}");
        }
    }

    #[test]
    fn unknown_domains_usernames_and_ids_are_left_alone() {
        let id = corp();
        assert_eq!(id.canonical(r"OTHER\jdoe"), r"OTHER\jdoe");
        assert_eq!(id.canonical("jdoe@other.example"), "jdoe@other.example");
        assert_eq!(id.canonical("JDoe@Other.Example"), "jdoe@other.example");
        assert_eq!(id.canonical("00uAbC123"), "00uAbC123");
        assert_eq!(id.canonical(" jdoe "), "jdoe");
        // A down-level name whose user part is itself an email is not rewritten.
        assert_eq!(id.canonical(r"CORP\jdoe@x"), r"CORP\jdoe@x");
        // No aliases: emails are still lower-cased, down-level names untouched.
        let plain = Identity::default();
        assert_eq!(plain.canonical("A@B.example"), "a@b.example");
        assert_eq!(plain.canonical(r"CORP\jdoe"), r"CORP\jdoe");
    }

    #[test]
    fn a_bare_username_takes_the_domain_the_alert_gave() {
        let id = corp();
        let down_level = Subject {
            username: Some("jdoe".into()),
            domain: Some("CORP".into()),
            ..Default::default()
        };
        assert_eq!(
            id.resolve("JDoe", std::slice::from_ref(&down_level)),
            "jdoe@corp.example"
        );
        let with_email = Subject {
            username: Some("asmith".into()),
            email: Some("ASmith@corp.com".into()),
            ..Default::default()
        };
        assert_eq!(id.resolve("asmith", &[with_email]), "asmith@corp.example");
        // An unknown domain, or two subjects with that username: the name is left as it is.
        let other = Subject {
            username: Some("jdoe".into()),
            domain: Some("OTHER".into()),
            ..Default::default()
        };
        assert_eq!(id.resolve("jdoe", std::slice::from_ref(&other)), "jdoe");
        assert_eq!(id.resolve("jdoe", &[down_level, other]), "jdoe");
    }

    #[test]
    fn bad_aliases_are_reported_with_their_path() {
        let mut problems = Vec::new();
        IdentityConfig {
            domain_aliases: BTreeMap::from([
                ("CORP".to_string(), "corp".to_string()),
                ("a@b".to_string(), "corp.example".to_string()),
                ("corp".to_string(), "corp.example".to_string()),
            ]),
            default_domain: Some("corp".into()),
        }
        .validate("identity", &mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"identity.domain_aliases.CORP"), "{paths:?}");
        assert!(paths.contains(&"identity.domain_aliases.a@b"), "{paths:?}");
        assert!(paths.contains(&"identity.domain_aliases.corp"), "{paths:?}");
        assert!(paths.contains(&"identity.default_domain"), "{paths:?}");
    }

    #[test]
    fn default_domain_widens_only_what_guards_compare() {
        let id = Identity::new(&IdentityConfig {
            domain_aliases: BTreeMap::from([("corp.com".to_string(), "corp.example".to_string())]),
            default_domain: Some("Corp.COM".into()),
        });
        assert_eq!(id.guard_forms("Admin"), ["Admin", "admin@corp.example"]);
        assert_eq!(id.guard_forms("admin@corp.com"), ["admin@corp.example"]);
        assert_eq!(id.guard_forms(r"OTHER\admin"), [r"OTHER\admin"]);
        // What actions are named by does not change: a bare name stays bare.
        assert_eq!(id.canonical("Admin"), "Admin");
        assert_eq!(corp().guard_forms("admin"), ["admin"]);
    }
}
