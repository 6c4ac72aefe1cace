//! Reading an [`EntryBody`] in one pass.
//!
//! serde's derived reader of an internally tagged enum (`#[serde(tag = "kind")]`)
//! copies the whole object into an intermediate tree, every nested object and list
//! allocated, before it knows the variant, and then reads the variant from that
//! tree: each entry of a push was read twice, and most of HQ's allocations for a
//! push body were that tree. Entries as the agent and HQ write them name their
//! `kind` first (a tagged enum's serializer writes the tag first), so the tag is read
//! first here and the variant straight from the rest of the object. Any other
//! shape (the tag further on, the array form) goes to the derived reader
//! ([`Tagged`]), given the object's first key again; so what is accepted and every
//! value read stay as they were, and so do the error messages, but for a body
//! with two faults, where the one met first is named (as everywhere else in a push
//! body), and the position, which is now where the fault is, not the body's end.

use super::{EntryBody, LeaseClosedEntry, ReleaseEntry, ReturnEntry, SaleEntry, WelcomeEntry};
use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use std::borrow::Cow;
use std::fmt;

/// The tag's field.
const TAG: &str = "kind";

/// The derived reader, for the shapes the one pass does not take (its errors name
/// the type as [`EntryBody`]'s did).
#[derive(Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    expecting = "internally tagged enum EntryBody"
)]
enum Tagged {
    Sale(SaleEntry),
    Return(ReturnEntry),
    Welcome(WelcomeEntry),
    Release(ReleaseEntry),
    LeaseClosed(LeaseClosedEntry),
}

impl From<Tagged> for EntryBody {
    fn from(tagged: Tagged) -> Self {
        match tagged {
            Tagged::Sale(e) => Self::Sale(e),
            Tagged::Return(e) => Self::Return(e),
            Tagged::Welcome(e) => Self::Welcome(e),
            Tagged::Release(e) => Self::Release(e),
            Tagged::LeaseClosed(e) => Self::LeaseClosed(e),
        }
    }
}

/// The tag's value, read as the derived reader reads it (the same names, the same
/// errors).
#[derive(Deserialize)]
#[serde(variant_identifier, rename_all = "snake_case")]
enum Kind {
    Sale,
    Return,
    Welcome,
    Release,
    LeaseClosed,
}

impl<'de> Deserialize<'de> for EntryBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = EntryBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The derived reader's words.
        f.write_str("internally tagged enum EntryBody")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<EntryBody, M::Error> {
        match map.next_key_seed(Key)? {
            None => return Err(de::Error::missing_field(TAG)),
            Some(key) if key == TAG => {}
            Some(other) => {
                let replay = Replay {
                    first: Some(other),
                    map,
                };
                return Tagged::deserialize(replay).map(EntryBody::from);
            }
        }
        let kind: Kind = map.next_value()?;
        let rest = MapAccessDeserializer::new(AfterTag(map));
        Ok(match kind {
            Kind::Sale => EntryBody::Sale(SaleEntry::deserialize(rest)?),
            Kind::Return => EntryBody::Return(ReturnEntry::deserialize(rest)?),
            Kind::Welcome => EntryBody::Welcome(WelcomeEntry::deserialize(rest)?),
            Kind::Release => EntryBody::Release(ReleaseEntry::deserialize(rest)?),
            Kind::LeaseClosed => EntryBody::LeaseClosed(LeaseClosedEntry::deserialize(rest)?),
        })
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<EntryBody, S::Error> {
        Tagged::deserialize(SeqAccessDeserializer::new(seq)).map(EntryBody::from)
    }
}

/// A key of the body's object, borrowed from the input when it can be.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// The rest of the object once its tag was read: the variant's fields. A second tag
/// is refused as the derived reader refuses it.
struct AfterTag<M>(M);

impl<'de, M: MapAccess<'de>> MapAccess<'de> for AfterTag<M> {
    type Error = M::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, M::Error> {
        match self.0.next_key_seed(Key)? {
            None => Ok(None),
            Some(key) if key == TAG => Err(de::Error::duplicate_field(TAG)),
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, M::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// The object for the derived reader: its first key, already read, then the rest.
struct Replay<'de, M> {
    first: Option<Cow<'de, str>>,
    map: M,
}

impl<'de, M: MapAccess<'de>> Deserializer<'de> for Replay<'de, M> {
    type Error = M::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, M::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        struct enum identifier ignored_any
    }
}

impl<'de, M: MapAccess<'de>> MapAccess<'de> for Replay<'de, M> {
    type Error = M::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, M::Error> {
        match self.first.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => self.map.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, M::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map
            .size_hint()
            .map(|n| n + usize::from(self.first.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A body of every kind, as the agent writes it (`kind` first).
    fn bodies() -> Vec<Value> {
        let sale = super::super::tests::sample_sale(10, Some("4006381333931"));
        let mut out = vec![serde_json::to_value(&sale.body).unwrap()];
        out.extend([
            json!({"kind": "return", "return_id": "RT-1", "receipt_id": "R-1",
                   "sale_entry": "00000000-0000-0000-0000-00000000002a", "card": null,
                   "returned": {"lines": [], "restored_points": 0,
                                "reversed_accrual_points": 0, "refund_minor": 0}}),
            json!({"kind": "welcome", "card": "4006381333931", "points": 50}),
            json!({"kind": "release", "receipt_id": "R-9", "card": "4006381333931",
                   "points": 30, "reason": "expired"}),
            json!({"kind": "lease_closed", "lease_id": "00000000-0000-0000-0000-000000000003",
                   "card": "4006381333931", "spent": 12}),
        ]);
        out
    }

    /// `body` as JSON text with its `kind` moved to position `at` among its keys.
    fn with_kind_at(body: &Value, at: usize) -> String {
        let fields = body.as_object().unwrap();
        let mut parts: Vec<String> = fields
            .iter()
            .filter(|(k, _)| *k != TAG)
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        let kind = format!("\"kind\":{}", fields[TAG]);
        parts.insert(at.min(parts.len()), kind);
        format!("{{{}}}", parts.join(","))
    }

    /// The answer without serde_json's position, which now names where the fault is.
    fn without_position(e: &serde_json::Error) -> String {
        let text = e.to_string();
        match text.rfind(" at line ") {
            Some(i) => text[..i].to_owned(),
            None => text,
        }
    }

    /// The one-pass reader answers `json` as the derived reader did: the same value,
    /// or the same error.
    fn same_as_derived(json: &str) {
        let ours = serde_json::from_str::<EntryBody>(json);
        let derived = serde_json::from_str::<Tagged>(json).map(EntryBody::from);
        match (ours, derived) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{json}"),
            (Err(a), Err(b)) => assert_eq!(without_position(&a), without_position(&b), "{json}"),
            (a, b) => panic!("{json}: {a:?} but the derived reader: {b:?}"),
        }
    }

    #[test]
    fn every_kind_reads_as_before_wherever_its_tag_is() {
        for body in bodies() {
            let keys = body.as_object().unwrap().len();
            for at in 0..keys {
                let json = with_kind_at(&body, at);
                same_as_derived(&json);
                let value: EntryBody = serde_json::from_str(&json).unwrap();
                assert_eq!(serde_json::to_value(&value).unwrap(), body);
            }
        }
    }

    #[test]
    fn faulty_bodies_are_refused_as_before() {
        let sale = serde_json::to_string(&bodies()[0]).unwrap();
        let welcome = r#""card":"4006381333931","points":50"#;
        for json in [
            "{}".to_owned(),
            "[]".to_owned(),
            "null".to_owned(),
            "5".to_owned(),
            r#""sale""#.to_owned(),
            format!(r#"{{"kind":"gift",{welcome}}}"#),
            format!(r#"{{{welcome},"kind":"gift"}}"#),
            format!(r#"{{"kind":7,{welcome}}}"#),
            format!(r#"{{"kind":null,{welcome}}}"#),
            format!(r#"{{"kind":"welcome","kind":"welcome",{welcome}}}"#),
            format!(r#"{{"kind":"welcome",{welcome},"kind":"welcome"}}"#),
            format!(r#"{{{welcome},"kind":"welcome","kind":"welcome"}}"#),
            format!(r#"{{"kind":"welcome",{welcome},"extra":1}}"#),
            format!(r#"{{"extra":1,"kind":"welcome",{welcome}}}"#),
            r#"{"kind":"welcome","card":"4006381333931"}"#.to_owned(),
            r#"{"kind":"welcome","card":"12","points":50}"#.to_owned(),
            r#"{"kind":"welcome","card":"4006381333931","points":"50"}"#.to_owned(),
            r#"{"kind":"welcome","card":"4006381333931","points":1.5}"#.to_owned(),
            r#"{"\u006bind":"welcome","card":"4006381333931","points":50}"#.to_owned(),
            r#"{"kind":"welc\u006fme","card":"4006381333931","points":50}"#.to_owned(),
            r#"["welcome","4006381333931",50]"#.to_owned(),
            r#"["welcome","4006381333931"]"#.to_owned(),
            r#"["gift"]"#.to_owned(),
            sale.replace("\"offline\":false", "\"offline\":0"),
            sale.replace("\"offline\":false", "\"offline\":false,\"lease\":{}"),
            sale.replace("\"qty\":2", "\"qty\":-2"),
        ] {
            same_as_derived(&json);
        }
    }

    #[test]
    fn a_fault_in_a_body_is_placed_where_it_is() {
        // The derived reader read the whole object first and placed every fault
        // at the object's end.
        let json = r#"{"kind":"welcome","card":"12","points":50,"padding":"......"}"#;
        let e = serde_json::from_str::<EntryBody>(json).unwrap_err();
        let end = json.find("\"points\"").unwrap();
        assert!(e.column() <= end, "{e} (column {}, end {end})", e.column());
    }

    #[test]
    fn whole_floats_are_integers_in_a_body_too() {
        // `json::from_slice` retries through a `Value`, whose objects come in key
        // order (`card` before `kind`): the derived reader's path.
        let json = br#"{"kind":"welcome","card":"4006381333931","points":50.0}"#;
        let body: EntryBody = crate::json::from_slice(json).unwrap();
        assert_eq!(body, serde_json::from_value(bodies()[2].clone()).unwrap());
    }
}
