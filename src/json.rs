//! The one JSON reader for untrusted input: serde_json, refusing duplicate object keys at any depth.
//!
//! JSON leaves duplicate keys undefined (RFC 8259 §4: names "SHOULD be unique"); serde_json keeps
//! the last, other parsers the first. A document such as `{"severity": "low", …, "severity":
//! "critical"}` would then mean one thing to the sender's filter and another to deprovd, so every
//! inbound document — API bodies, alerts over HTTP and Kafka, Okta hook deliveries, Shared Signals
//! SETs, target API answers — is read here, and a repeated key is an error naming the key and where
//! it is (`duplicate key `severity` at line 1 column 57`).
//!
//! It is serde_json's own parser with a [`Visitor`] that builds the [`Value`] and checks each map
//! key as it arrives; serde_json's recursion limit (128 levels) still applies.

use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parse `bytes` as one JSON document, refusing duplicate keys.
pub(crate) fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Parse `bytes` strictly, then into `T`.
pub(crate) fn from_slice_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_value(from_slice(bytes)?)
}

/// The seed that reads one value (and, through [`Visitor`], every nested one) strictly.
#[derive(Clone, Copy)]
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // No `size_hint` preallocation: a hostile hint must not reserve memory.
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    key.escape_debug()
                )));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`from_slice`] for text.
    fn from_str(text: &str) -> Result<Value, serde_json::Error> {
        from_slice(text.as_bytes())
    }

    #[test]
    fn a_duplicate_key_is_refused_at_any_depth_with_its_name() {
        for doc in [
            r#"{"severity":"low","title":"t","severity":"critical"}"#,
            r#"{"a":{"b":[{"c":1,"c":2}]}}"#,
            r#"[{"x":1},{"y":1,"y":1}]"#,
        ] {
            let e = from_str(doc).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{doc}: {e}");
        }
        let e = from_str(r#"{"severity":"low","severity":"critical"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`severity`") && e.contains("column"), "{e}");
    }

    #[test]
    fn documents_without_duplicates_read_exactly_as_serde_json_reads_them() {
        for doc in [
            r#"{"a":1,"b":[1,-2,3.5,"x",null,true],"c":{"a":1},"d":18446744073709551615}"#,
            r#"[]"#,
            r#""s""#,
            r#"{"same":{"k":1},"other":{"k":2}}"#,
            "  {\"\\u00e9\": \"\\ud83d\\ude00\"}  ",
        ] {
            let want: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(from_str(doc).unwrap(), want, "{doc}");
        }
    }

    #[test]
    fn trailing_garbage_and_deep_nesting_are_errors_not_crashes() {
        assert!(from_str(r#"{"a":1} x"#).is_err());
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(
            from_str(&deep)
                .unwrap_err()
                .to_string()
                .contains("recursion")
        );
    }

    #[test]
    fn typed_reads_go_through_the_strict_reader() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: serde_json::Value,
        }
        assert!(from_slice_as::<T>(br#"{"a":{"x":1,"x":2}}"#).is_err());
        assert!(from_slice_as::<T>(br#"{"a":{"x":1}}"#).is_ok());
    }
}
