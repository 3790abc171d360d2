//! A `serde::Serializer` that builds a [`regorus::Value`] directly.
//!
//! Why: the policy input is built once per alert on the hot path. Going `Alert → serde_json::Value →
//! regorus::Value` allocates the whole tree twice; going through a JSON string also re-parses it. This
//! serializer walks the `Serialize` impl once and allocates only the final tree. It follows
//! `serde_json`'s data model (options are `null`, unit variants are strings, map keys must be strings,
//! numbers or booleans and become strings) so policies see exactly what `serde_json` would produce.

use std::collections::BTreeMap;
use std::fmt;

use regorus::Value;
use serde::ser::{self, Serialize};

/// Why a value could not be converted (only for types JSON cannot represent).
#[derive(Debug)]
pub(super) struct ToValueError(String);

impl fmt::Display for ToValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToValueError {}

impl ser::Error for ToValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ToValueError(msg.to_string())
    }
}

/// Serialize `value` into a regorus [`Value`].
pub(super) fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ToValueError> {
    value.serialize(ValueSerializer)
}

/// The serializer itself; stateless.
pub(super) struct ValueSerializer;

type Res = Result<Value, ToValueError>;

fn variant_object(variant: &'static str, inner: Value) -> Value {
    let mut map = BTreeMap::new();
    map.insert(Value::from(variant), inner);
    Value::from(map)
}

/// `fn $name(self, v: $from) -> Res` for each integer type, widening it to `$to` first.
macro_rules! widen_integers {
    ($($name:ident: $from:ty => $to:ty),* $(,)?) => {
        $(
            fn $name(self, v: $from) -> Res {
                Ok(Value::from(<$to>::from(v)))
            }
        )*
    };
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ToValueError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Res {
        Ok(Value::Bool(v))
    }
    // Integers widen losslessly to the 64- or 128-bit integer regorus stores.
    widen_integers! {
        serialize_i8: i8 => i64, serialize_i16: i16 => i64, serialize_i32: i32 => i64,
        serialize_i64: i64 => i64, serialize_i128: i128 => i128,
        serialize_u8: u8 => u64, serialize_u16: u16 => u64, serialize_u32: u32 => u64,
        serialize_u64: u64 => u64, serialize_u128: u128 => u128,
    }
    fn serialize_f32(self, v: f32) -> Res {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Res {
        // JSON has no NaN or infinities; serde_json writes them as null.
        if v.is_finite() {
            Ok(Value::from(v))
        } else {
            Ok(Value::Null)
        }
    }
    fn serialize_char(self, v: char) -> Res {
        let mut buf = [0u8; 4];
        Ok(Value::from(&*v.encode_utf8(&mut buf)))
    }
    fn serialize_str(self, v: &str) -> Res {
        Ok(Value::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Res {
        Ok(Value::from(
            v.iter()
                .map(|b| Value::from(u64::from(*b)))
                .collect::<Vec<_>>(),
        ))
    }
    fn serialize_none(self) -> Res {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Res {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> Res {
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Res {
        Ok(variant_object(variant, value.serialize(self)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, ToValueError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0)),
            variant: None,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, ToValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _n: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, ToValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, ToValueError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            variant: Some(variant),
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder, ToValueError> {
        Ok(MapBuilder::new(None))
    }
    fn serialize_struct(self, _n: &'static str, _len: usize) -> Result<MapBuilder, ToValueError> {
        Ok(MapBuilder::new(None))
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<MapBuilder, ToValueError> {
        Ok(MapBuilder::new(Some(variant)))
    }
}

/// Collects array elements (and tuple-variant payloads).
pub(super) struct SeqBuilder {
    items: Vec<Value>,
    variant: Option<&'static str>,
}

impl SeqBuilder {
    fn finish(self) -> Res {
        let array = Value::from(self.items);
        Ok(match self.variant {
            Some(v) => variant_object(v, array),
            None => array,
        })
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        self.items.push(value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Res {
        self.finish()
    }
}

/// Tuples, tuple structs and tuple variants collect like sequences: `$method` (the trait's name for
/// adding one element) pushes as [`ser::SerializeSeq::serialize_element`] does.
macro_rules! seq_like {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for SeqBuilder {
            type Ok = Value;
            type Error = ToValueError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
                ser::SerializeSeq::serialize_element(self, value)
            }
            fn end(self) -> Res {
                self.finish()
            }
        }
    )*};
}

seq_like!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// Collects object members (maps, structs, struct-variant payloads).
pub(super) struct MapBuilder {
    map: BTreeMap<Value, Value>,
    pending_key: Option<Value>,
    variant: Option<&'static str>,
}

impl MapBuilder {
    fn new(variant: Option<&'static str>) -> Self {
        Self {
            map: BTreeMap::new(),
            pending_key: None,
            variant,
        }
    }

    fn finish(self) -> Res {
        let object = Value::from(self.map);
        Ok(match self.variant {
            Some(v) => variant_object(v, object),
            None => object,
        })
    }
}

/// JSON object keys are strings; like serde_json, accept numbers and booleans and stringify them.
fn key_value<T: Serialize + ?Sized>(key: &T) -> Res {
    match key.serialize(ValueSerializer)? {
        s @ Value::String(_) => Ok(s),
        v @ (Value::Number(_) | Value::Bool(_)) => Ok(Value::from(v.to_string())),
        other => Err(ToValueError(format!(
            "object keys must be strings, numbers or booleans, not {other}"
        ))),
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ToValueError> {
        self.pending_key = Some(key_value(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ToValueError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| ToValueError("map value serialized before its key".into()))?;
        self.map.insert(key, value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Res {
        self.finish()
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ToValueError> {
        self.map
            .insert(Value::from(key), value.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Res {
        self.finish()
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Value;
    type Error = ToValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ToValueError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Res {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tree_as_going_through_serde_json() {
        let doc = serde_json::json!({
            "s": "x", "n": -3, "u": 18446744073709551615u64, "f": 1.5, "b": true, "null": null,
            "arr": [1, "two", {"three": [3.0]}], "nested": {"k": {"v": []}}
        });
        let direct = to_value(&doc).unwrap();
        let via_json = Value::from_json_str(&doc.to_string()).unwrap();
        assert_eq!(direct, via_json);
    }

    #[test]
    fn alert_enums_and_options_follow_serde_json() {
        let alert: crate::alert::Alert = serde_json::from_value(serde_json::json!({
            "id": "a1", "source": {"vendor": "v"}, "time": "2026-01-01T00:00:00Z",
            "severity": "high", "category": "malware", "subjects": [{"email": "a@b.c"}],
            "labels": {"env": "prod"}, "raw": {"x": 1}
        }))
        .unwrap();
        let direct = to_value(&alert).unwrap();
        let via_json = Value::from_json_str(&serde_json::to_string(&alert).unwrap()).unwrap();
        assert_eq!(direct, via_json);
        assert_eq!(direct["severity"], Value::from("high"));
        assert_eq!(direct["subjects"][0]["kind"], Value::from("user"));
    }

    #[test]
    fn non_string_map_keys_become_strings() {
        let mut m = BTreeMap::new();
        m.insert(7u32, "seven");
        let v = to_value(&m).unwrap();
        assert_eq!(v["7"], Value::from("seven"));
    }
}
