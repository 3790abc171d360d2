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
//!
//! # One canonical subject, so a guard and a target never disagree
//!
//! Directories do not compare names byte for byte. OpenLDAP and Active Directory prepare both sides
//! of a `caseIgnoreMatch` per RFC 4518: compatibility normalisation (NFKC: fullwidth `ｂ` is `b`, the
//! long `ſ` is `s`, the Kelvin sign `K` is `K`, the ligature `ﬀ` is `ff`), case folding, and
//! invisible characters mapped to nothing. A guard comparing lower-cased bytes would let
//! `ｂｒｅａｋｇｌａｓｓ@example.org` lock the protected `breakglass@example.org`. So, here and only
//! here:
//!
//! - [`check_subject`] **refuses** (a typed [`SubjectError`]) subjects longer than
//!   [`MAX_SUBJECT_BYTES`] and subjects holding any character a target would drop or could read as
//!   structure: control characters (NUL, CR, LF, C1), invisible format characters (zero-width
//!   spaces and joiners, bidi controls, U+FEFF, U+2060, everything Default_Ignorable), line and
//!   paragraph separators, private-use and unassigned code points. Refused at ingest (the alert is
//!   kept, the subject gets a problem and no action) and for manual lockouts (422).
//! - [`Identity::canonical`] names actions: NFKC, trimmed, emails lower-cased and their domain
//!   mapped through the aliases. Bare names and per-system ids keep their case (Okta ids are
//!   case-sensitive), so the form a connector looks up is the NFKC form of what was asked for.
//! - [`fold`] is the *comparison* key every guard uses — NFKC, full Unicode case folding, NFKC
//!   again (NFKC_Casefold, as the targets fold), invisible characters dropped, white space runs
//!   collapsed (RFC 4518 insignificant space handling). It is at least as coarse as any target's own
//!   matching, so whatever a target would find equal to a protected name, the guard finds equal too.
//!
//! Unicode data comes from ICU4X (`icu_normalizer`, `icu_casemap`, `icu_properties`), never from
//! tables written here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use icu_casemap::CaseMapper;
use icu_normalizer::ComposingNormalizer;
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

use serde::Deserialize;

use crate::alert::Subject;
use crate::config::Problem;

/// The longest subject accepted anywhere a subject enters (alerts, lockouts, connector lookups), in
/// bytes. Real account names are far shorter (an email address is at most 254 bytes, RFC 5321); the
/// bound keeps every filter, URL and log line built from a subject small whatever an alert says.
pub(crate) const MAX_SUBJECT_BYTES: usize = 1024;

/// Why a subject was refused. Refusal is final for that subject: it never becomes an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error(
        "the subject is {len} bytes long; at most {MAX_SUBJECT_BYTES} are accepted (no account name is that long)"
    )]
    TooLong { len: usize },
    #[error(
        "the subject contains {kind} (U+{code:04X}) at character {index}; such characters are refused \
         because directories drop or fold them, so the name would not be the account the guards checked"
    )]
    Forbidden {
        /// The refused code point.
        code: u32,
        /// Its position, counted in characters from 0.
        index: usize,
        /// What kind of character it is, in words.
        kind: &'static str,
    },
}

/// Characters RFC 4518 §2.2 maps to nothing: controls, format characters and the
/// Default_Ignorable code points (zero-width spaces and joiners, bidi controls, U+FEFF, variation
/// selectors…), plus U+1806 MONGOLIAN TODO SOFT HYPHEN, the one entry of RFC 3454 table B.1 that is
/// neither Default_Ignorable nor a format character. White space is not among them.
fn maps_to_nothing(c: char) -> bool {
    if c.is_ascii() {
        return c.is_control() && !c.is_whitespace();
    }
    (c.is_control() && !c.is_whitespace())
        || c == '\u{1806}'
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format
}

/// Whether `c` is refused in a subject, and why (see [`check_subject`]).
fn refused(c: char) -> Option<&'static str> {
    if c.is_control() {
        return Some("a control character");
    }
    if c.is_ascii() {
        return None;
    }
    if maps_to_nothing(c) {
        return Some("an invisible (format or default-ignorable) character");
    }
    match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line or paragraph separator")
        }
        GeneralCategory::PrivateUse => Some("a private-use character"),
        GeneralCategory::Unassigned => Some("an unassigned code point"),
        _ if c == '\u{FFFD}' => Some("the replacement character (the input was not valid text)"),
        _ => None,
    }
}

/// Accept or refuse a subject as it arrives: at most [`MAX_SUBJECT_BYTES`], and no control,
/// invisible, separator, private-use or unassigned character anywhere (not even at the ends: a
/// trailing NUL or newline is refused, not trimmed).
pub(crate) fn check_subject(subject: &str) -> Result<(), SubjectError> {
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(SubjectError::TooLong { len: subject.len() });
    }
    for (index, c) in subject.chars().enumerate() {
        if let Some(kind) = refused(c) {
            return Err(SubjectError::Forbidden {
                code: c as u32,
                index,
                kind,
            });
        }
    }
    Ok(())
}

/// Unicode NFKC (compatibility composition). ASCII is already in NFKC and is borrowed as it is.
pub(crate) fn nfkc(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        Cow::Borrowed(s)
    } else {
        ComposingNormalizer::new_nfkc().normalize(s)
    }
}

/// What a connector looks a subject up by: the subject checked ([`check_subject`]), trimmed and in
/// NFKC — the same form [`Identity::canonical`] gave the action, so re-applying it to an action's
/// subject changes nothing. Connectors call it on every lookup input, so an action recorded before
/// this check existed (or written to the ledger by hand) cannot smuggle a control character or a
/// megabyte subject into a filter or a URL.
pub(crate) fn lookup_form(subject: &str) -> Result<Cow<'_, str>, SubjectError> {
    check_subject(subject)?;
    Ok(match nfkc(subject.trim()) {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    })
}

/// The comparison key of a name: the guards compare these, never raw spellings.
///
/// A model of what directories do to both sides of a match (RFC 4518 string preparation with
/// Unicode's NFKC_Casefold): characters mapped to nothing (controls, Default_Ignorable and format
/// characters) dropped, white space mapped to a space, NFKC, full case folding, NFKC again, and
/// white space runs collapsed and trimmed (insignificant space handling). Dropping rather than
/// refusing here is deliberate: identifiers a *target* reports are folded too, and folding
/// `break\u{200B}glass` to `breakglass` can only make more names protected, never fewer.
pub(crate) fn fold(name: &str) -> String {
    if name.is_ascii() {
        // ASCII: full case folding is lower-casing and NFKC is the identity; only the mapping and
        // the white space handling remain, done in one pass.
        let mut out = String::with_capacity(name.len());
        let mut space = false;
        for c in name.chars() {
            if c.is_whitespace() {
                space = !out.is_empty();
            } else if !c.is_control() {
                if space {
                    out.push(' ');
                    space = false;
                }
                out.push(c.to_ascii_lowercase());
            }
        }
        return out;
    }
    let mapped: String = name
        .chars()
        .filter(|c| !maps_to_nothing(*c))
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let normalizer = ComposingNormalizer::new_nfkc();
    let composed = normalizer.normalize(&mapped);
    let folded = CaseMapper::new().fold_string(&composed);
    let again = normalizer.normalize(&folded);
    again.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The username part of a folded name, as a directory's `uid`/`sAMAccountName` would hold it:
/// `jdoe` for `jdoe@corp.example`, `corp\jdoe` and `jdoe`. `None` when there is none.
pub(crate) fn local_part(folded: &str) -> Option<&str> {
    let after_domain = folded.rsplit_once('\\').map_or(folded, |(_, u)| u);
    let user = after_domain
        .rsplit_once('@')
        .map_or(after_domain, |(u, _)| u)
        .trim();
    (!user.is_empty()).then_some(user)
}

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
pub(crate) fn normalize_token_name(name: &str) -> String {
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

    /// The keys the guards compare for `subject`, each [`fold`]ed: its canonical form and, for a
    /// bare username when `default_domain` is set, `username@default_domain` too. Never used to name
    /// an action.
    pub fn guard_forms(&self, subject: &str) -> Vec<String> {
        let canonical = fold(&self.canonical(subject));
        let bare = !canonical.is_empty() && !canonical.contains(['@', '\\']);
        match &self.default_domain {
            Some(d) if bare => {
                let qualified = format!("{canonical}@{}", fold(d));
                vec![canonical, qualified]
            }
            _ => vec![canonical],
        }
    }

    /// [`check_subject`], then [`canonical`](Self::canonical): how every subject that enters from
    /// outside (an alert's decision, a manual lockout) becomes an action's subject.
    pub fn check(&self, subject: &str) -> Result<String, SubjectError> {
        check_subject(subject)?;
        Ok(self.canonical(subject))
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
    ///
    /// Every case starts from the NFKC form ([`nfkc`]), so fullwidth or ligature spellings name the
    /// account their plain letters do. Refusing control characters is [`check`](Self::check)'s job;
    /// this never fails.
    pub fn canonical(&self, subject: &str) -> String {
        let s = nfkc(subject.trim());
        let s = s.trim();
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
            let mut matches = alert_subjects
                .iter()
                .filter(|s| s.username.as_deref().is_some_and(|u| fold(u) == fold(n)));
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
        assert_eq!(id.guard_forms("Admin"), ["admin", "admin@corp.example"]);
        assert_eq!(id.guard_forms("admin@corp.com"), ["admin@corp.example"]);
        assert_eq!(id.guard_forms(r"OTHER\admin"), [r"other\admin"]);
        // What actions are named by does not change: a bare name stays bare.
        assert_eq!(id.canonical("Admin"), "Admin");
        assert_eq!(corp().guard_forms("admin"), ["admin"]);
    }

    #[test]
    fn confusable_spellings_fold_to_the_plain_name() {
        for s in [
            "ｂｒｅａｋｇｌａｓｓ@example.org", // fullwidth
            "breakglaſs@example.org",           // long s
            "BREAKGLASS@EXAMPLE.ORG",
            "ＢｒｅａｋＧｌａｓｓ@ｅｘａｍｐｌｅ．ｏｒｇ",
            "break\u{200B}glass@example.org", // zero-width space, dropped as RFC 4518 does
            "breakglass\0@example.org",       // NUL, dropped
            " breakglass@example.org \t",
        ] {
            assert_eq!(fold(s), "breakglass@example.org", "{s:?}");
        }
        assert_eq!(fold("\u{212A}elvin"), "kelvin"); // Kelvin sign
        assert_eq!(fold("ﬀ"), "ff"); // ligature
        assert_eq!(fold("Straße"), "strasse"); // full, not simple, case folding
        assert_eq!(fold("  two   words "), "two words");
    }

    #[test]
    fn control_invisible_and_oversized_subjects_are_refused_with_a_typed_error() {
        for (s, code) in [
            ("breakglass\0", 0x0),
            ("breakglass\n", 0xA),
            ("a\rb", 0xD),
            ("break\u{200B}glass", 0x200B),
            ("break\u{200D}glass", 0x200D),
            ("break\u{2060}glass", 0x2060),
            ("\u{FEFF}breakglass", 0xFEFF),
            ("break\u{202E}glass", 0x202E),
            ("break\u{00AD}glass", 0xAD),
            ("break\u{1806}glass", 0x1806),
            ("a\u{2028}b", 0x2028),
            ("a\u{85}b", 0x85),
            ("a\u{E000}b", 0xE000),
        ] {
            match check_subject(s) {
                Err(SubjectError::Forbidden { code: c, .. }) => assert_eq!(c, code, "{s:?}"),
                other => panic!("{s:?} was not refused: {other:?}"),
            }
        }
        let long = "a".repeat(MAX_SUBJECT_BYTES + 1);
        assert_eq!(
            check_subject(&long),
            Err(SubjectError::TooLong {
                len: MAX_SUBJECT_BYTES + 1
            })
        );
        assert!(check_subject(&"a".repeat(MAX_SUBJECT_BYTES)).is_ok());
        // Confusables are not refused: they are folded (an account may really be named in them).
        for s in [
            "ｂｒｅａｋｇｌａｓｓ",
            "breakglaſs",
            "jdoe@corp.example",
            "José",
            "\u{212A}",
        ] {
            assert!(check_subject(s).is_ok(), "{s:?}");
        }
        let e = check_subject("x\0").unwrap_err().to_string();
        assert!(e.contains("U+0000") && e.contains("control"), "{e}");
    }

    #[test]
    fn canonical_subjects_are_nfkc_and_lookups_use_the_same_form() {
        let id = Identity::default();
        assert_eq!(id.canonical("ｂｒｅａｋｇｌａｓｓ"), "breakglass");
        assert_eq!(
            id.canonical("breakglaſs@Example.org"),
            "breakglass@example.org"
        );
        assert_eq!(id.canonical("ＪＤｏｅ"), "JDoe"); // bare names keep their case
        assert_eq!(id.check("a\0"), Err(check_subject("a\0").unwrap_err()));
        assert_eq!(lookup_form(" ｊｄｏｅ ").unwrap(), "jdoe");
        assert!(lookup_form("jdoe\0").is_err());
        let canonical = id.canonical("Ｊdoe@corp.example");
        assert_eq!(lookup_form(&canonical).unwrap(), canonical);
    }

    #[test]
    fn the_local_part_is_the_username_a_directory_would_hold() {
        assert_eq!(local_part("jdoe@corp.example"), Some("jdoe"));
        assert_eq!(local_part("corp\\jdoe"), Some("jdoe"));
        assert_eq!(local_part("jdoe"), Some("jdoe"));
        assert_eq!(local_part("@corp.example"), None);
    }
}
