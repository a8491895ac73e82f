//! Finding the line and column of any node in a YAML text.
//!
//! serde_yaml_ng reports a line and column only for the error that stops a deserialisation,
//! and only the first; it has no spans. So a path is located by deserialising the text again
//! with a probe that walks to the path and fails there on purpose: serde_yaml_ng attaches the
//! place of the node being read to that failure. That costs one parse per located node,
//! which is nothing for configuration files, and keeps a single YAML parser (no second parser
//! that could read the file differently).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::keypath::{KeyPath, Segment};

/// Whether a mapping entry is located at its key or at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Key,
    Value,
}

/// Line and column of the node at `path`, by failing on purpose when the walk reaches it.
pub(crate) fn probe(text: &str, path: &KeyPath, target: Target) -> Option<(usize, usize)> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let error = Probe(path.segments(), target)
        .deserialize(deserializer)
        .err()?;
    let location = error.location()?;
    Some((location.line(), location.column()))
}

const FOUND: &str = "v6guard: node found";

/// Walks to the node at the remaining path; fails with [`FOUND`] on reaching it.
struct Probe<'p>(&'p [Segment], Target);

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Probe<'_> {
    /// At the target, a scalar fails where it stands; elsewhere a scalar ends the walk.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Segment::Key(first), rest)) = self.0.split_first() else {
            return self.scalar();
        };
        while let Some(hit) = map.next_key_seed(KeyProbe {
            key: first,
            last: rest.is_empty() && self.1 == Target::Key,
        })? {
            if hit {
                map.next_value_seed(Probe(rest, self.1))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Segment::Index(target), rest)) = self.0.split_first() else {
            return self.scalar();
        };
        for _ in 0..*target {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe(rest, self.1))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // Tagged values (`!tag x`): located at the tag.
        self.scalar()
    }
}

/// Reads one mapping key: `Ok(true)` when it is the one to descend into, an error carrying
/// the key's place when it is the target itself.
struct KeyProbe<'k> {
    key: &'k str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl KeyProbe<'_> {
    fn text<E: de::Error>(self, text: &str) -> Result<bool, E> {
        match (text == self.key, self.last) {
            (true, true) => Err(E::custom(FOUND)),
            (hit, _) => Ok(hit),
        }
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.text(v)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.text(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.text(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.text(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Ok(false)
    }
}
