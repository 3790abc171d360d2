//! Ids by any unique prefix: every command that takes an action key or a lockout id accepts the
//! 12-character prefixes the tables print, or any other prefix that names exactly one — and says
//! "ambiguous", listing the candidates, when it names several.

use super::{Client, ClientError, is_action_key, path_segment};

/// How many candidates an ambiguous prefix lists.
const SHOWN: usize = 10;

/// Which kinds of id a command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kinds {
    Actions,
    Both,
}

/// A full id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A ledger key (64 hex).
    Action(String),
    /// A lockout id (a UUID).
    Lockout(String),
}

/// Lockout ids are UUIDs: 36 characters with dashes.
fn is_lockout_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok() && id.len() == 36
}

impl Client {
    /// The one action key or lockout id `id` is, or starts.
    pub(crate) async fn resolve(&self, id: &str, kinds: Kinds) -> Result<Resolved, ClientError> {
        let id = id.trim();
        if is_action_key(id) {
            return Ok(Resolved::Action(id.to_ascii_lowercase()));
        }
        if kinds == Kinds::Both && is_lockout_id(id) {
            return Ok(Resolved::Lockout(id.to_ascii_lowercase()));
        }
        let prefix = id.to_ascii_lowercase();
        let mut found: Vec<Resolved> = Vec::new();
        if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let v = self
                .get(&format!(
                    "/v1/actions?key_prefix={}&limit={}",
                    path_segment(&prefix),
                    SHOWN + 1
                ))
                .await?;
            for a in v["actions"].as_array().into_iter().flatten() {
                if let Some(k) = a["key"].as_str() {
                    found.push(Resolved::Action(k.to_string()));
                }
            }
        }
        if kinds == Kinds::Both && !prefix.is_empty() {
            let v = self
                .get(&format!(
                    "/v1/lockouts?id_prefix={}&limit={}",
                    path_segment(&prefix),
                    SHOWN + 1
                ))
                .await?;
            for l in v["lockouts"].as_array().into_iter().flatten() {
                if let Some(i) = l["id"].as_str() {
                    found.push(Resolved::Lockout(i.to_string()));
                }
            }
        }
        match found.len() {
            0 => Err(ClientError::NotFound {
                what: match kinds {
                    Kinds::Actions => "action",
                    Kinds::Both => "action or lockout",
                },
                prefix: id.to_string(),
            }),
            1 => Ok(found.remove(0)),
            _ => Err(ClientError::Ambiguous {
                prefix: id.to_string(),
                matches: found
                    .iter()
                    .take(SHOWN)
                    .map(|r| match r {
                        Resolved::Action(k) => format!("action  {k}"),
                        Resolved::Lockout(i) => format!("lockout {i}"),
                    })
                    .collect(),
            }),
        }
    }

    /// The one action key `id` is, or starts.
    pub(crate) async fn resolve_action(&self, id: &str) -> Result<String, ClientError> {
        match self.resolve(id, Kinds::Actions).await? {
            Resolved::Action(k) => Ok(k),
            Resolved::Lockout(i) => Err(ClientError::NotFound {
                what: "action",
                prefix: i,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ids_are_told_apart_without_asking() {
        assert!(is_lockout_id("0196b7e0-0000-7000-8000-000000000000"));
        assert!(!is_lockout_id("0196b7e0"));
        assert!(!is_lockout_id(&"a".repeat(64)));
    }

    #[test]
    fn an_ambiguous_prefix_lists_its_candidates() {
        let e = ClientError::Ambiguous {
            prefix: "ab".into(),
            matches: vec!["action  ab1".into(), "lockout ab2".into()],
        };
        let text = e.to_string();
        assert!(text.contains("ambiguous"), "{text}");
        assert!(text.contains("ab1") && text.contains("ab2"), "{text}");
    }
}
