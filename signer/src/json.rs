//! JSON from outside, parsed strictly: a document whose object repeats a key
//! is refused.
//!
//! `serde_json::Value` keeps the last of repeated keys. A proxy or logger in
//! front of the signer that keeps the first would see another request than
//! the one signed (a parser differential), so the signer accepts neither.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one JSON document, refusing repeated object keys.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0)
}

/// A [`Value`] built without accepting a repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
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
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key \"{key}\"")));
            }
            let Strict(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"type":"BLOCK","type":"ATTESTATION"}}"#,
            r#"[{"k":[]},{"k":1,"k":1}]"#,
        ] {
            let e = from_slice(doc.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("duplicate key \""), "{doc}: {e}");
        }
    }

    #[test]
    fn everything_else_parses_as_serde_json_does() {
        for doc in [
            r#"{"a":1,"b":[true,null,-3,1.5,"s"],"c":{"a":18446744073709551615}}"#,
            "[]",
            "\"\\u00e9\"",
            "0",
        ] {
            let ours = from_slice(doc.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(ours, theirs, "{doc}");
        }
        assert!(from_slice(b"{\"a\":1} x").is_err(), "trailing input");
        assert!(from_slice(b"{\"a\":").is_err());
    }
}
