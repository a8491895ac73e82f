//! The dotted path of a key in a YAML document (`containers.db.deny[1]`): what the checker
//! (`yaml`) names in its errors and what the locator (`locate`) walks to. Its own module so
//! those two depend on it and not on each other.

use std::fmt;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// The dotted path of a key (`containers.db.deny[1]`), as messages show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub fn key(&self, key: &str) -> KeyPath {
        self.push(Segment::Key(key.to_string()))
    }

    pub fn index(&self, index: usize) -> KeyPath {
        self.push(Segment::Index(index))
    }

    fn push(&self, segment: Segment) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        KeyPath(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn parent(&self) -> Option<KeyPath> {
        let (_, rest) = self.0.split_last()?;
        Some(KeyPath(rest.to_vec()))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    // Docker names may contain dots; quote them so the path stays readable.
                    let plain = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if plain {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}
