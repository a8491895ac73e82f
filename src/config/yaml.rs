//! YAML documents whose every node can be located, and a checker that collects errors.
//!
//! A file is parsed once into a `Value` (syntax errors carry their place) and checked by
//! walking that tree, collecting every error with the dotted path of its key; `locate` then
//! finds each path's line and column.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::error::{ConfigError, Location};
use super::keypath::KeyPath;
use super::locate::{Target, probe};
use super::values::Invalid;

/// A parsed YAML file that can say where any of its nodes is.
pub(crate) struct Document<'t> {
    file: PathBuf,
    text: &'t str,
    root: Value,
}

impl<'t> Document<'t> {
    /// Parse `text`, read from `file`. An empty file (or one of comments only) is `null`.
    pub fn parse(file: &Path, text: &'t str) -> Result<Self, ConfigError> {
        match serde_yaml_ng::from_str::<Value>(text) {
            Ok(root) => Ok(Document {
                file: file.to_path_buf(),
                text,
                root,
            }),
            Err(error) => Err(syntax_error(file, &error)),
        }
    }

    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Where the entry at `path` is: its key for a mapping entry, the item for a list
    /// element. For messages about a key (unknown, missing, duplicated) and entry origins.
    pub fn locate(&self, path: &KeyPath) -> Location {
        self.find(path, Target::Key)
    }

    /// Where the value at `path` starts. For messages about a value.
    pub fn locate_value(&self, path: &KeyPath) -> Location {
        self.find(path, Target::Value)
    }

    /// Falls back to the nearest located parent, then to the file's start.
    fn find(&self, path: &KeyPath, target: Target) -> Location {
        let mut current = Some(path.clone());
        while let Some(path) = current {
            if let Some((line, column)) = probe(self.text, &path, target) {
                return self.at(line, column);
            }
            current = path.parent();
        }
        self.at(1, 1)
    }

    fn at(&self, line: usize, column: usize) -> Location {
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }
}

fn syntax_error(file: &Path, error: &serde_yaml_ng::Error) -> ConfigError {
    let mut message = error.to_string();
    let (line, column) = match error.location() {
        Some(location) => {
            // The place leads the message; do not repeat it at the end.
            let place = format!(" at line {} column {}", location.line(), location.column());
            message = message.replacen(&place, "", 1);
            (location.line(), location.column())
        }
        None => (1, 1),
    };
    // Prefixes such as `::/0` cannot start a plain value inside [...] in YAML.
    if message.contains("flow") {
        message.push_str(
            " (inside [...] or {...}, quote values that start with ':', such as \"::/0\")",
        );
    }
    ConfigError::Syntax {
        at: Location {
            file: file.to_path_buf(),
            line,
            column,
        },
        message,
    }
}

/// A mapping's entries after its keys were checked.
pub(crate) struct Table<'v> {
    entries: Vec<(&'v str, &'v Value)>,
}

impl<'v> Table<'v> {
    pub fn get(&self, key: &str) -> Option<&'v Value> {
        self.entries
            .iter()
            .find_map(|(k, v)| (*k == key).then_some(*v))
    }

    pub fn entries(&self) -> &[(&'v str, &'v Value)] {
        &self.entries
    }
}

/// Walks a document and collects every error, each located.
pub(crate) struct Checker<'d, 't> {
    doc: &'d Document<'t>,
    errors: Vec<ConfigError>,
}

impl<'d, 't> Checker<'d, 't> {
    pub fn new(doc: &'d Document<'t>) -> Self {
        Checker {
            doc,
            errors: Vec::new(),
        }
    }

    pub fn locate(&self, path: &KeyPath) -> Location {
        self.doc.locate(path)
    }

    /// The errors in the order of the file, as a compiler lists them.
    pub fn finish(mut self) -> Vec<ConfigError> {
        self.errors
            .sort_by_key(|e| e.location().map(|at| (at.line, at.column)));
        self.errors
    }

    /// An error about the key at `path` (unknown, missing something, a bad name).
    pub fn invalid(
        &mut self,
        path: &KeyPath,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let at = self.doc.locate(path);
        self.push(at, path, problem.into(), expected.into());
    }

    /// An error about the value at `path`.
    pub fn invalid_value(
        &mut self,
        path: &KeyPath,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let at = self.doc.locate_value(path);
        self.push(at, path, problem.into(), expected.into());
    }

    fn push(&mut self, at: Location, path: &KeyPath, problem: String, expected: String) {
        self.errors.push(ConfigError::Invalid {
            at,
            key: path.to_string(),
            problem,
            expected,
        });
    }

    /// A mapping whose keys are names chosen by the user (networks, containers). `null` (a
    /// section whose entries are all commented out) is an empty mapping.
    pub fn names<'v>(&mut self, value: &'v Value, path: &KeyPath, what: &str) -> Table<'v> {
        let Some(mapping) = self.mapping(value, path, what) else {
            return Table {
                entries: Vec::new(),
            };
        };
        let mut entries = Vec::new();
        for (key, value) in mapping {
            match key.as_str() {
                Some(name) => entries.push((name, value)),
                None => self.invalid(
                    path,
                    format!("the key {} is not a name", describe(key)),
                    format!("{what}, keyed by name"),
                ),
            }
        }
        Table { entries }
    }

    /// A mapping with a fixed set of keys. Unknown keys are errors, with a suggestion when one
    /// is a likely typo, so `iccc: false` is never silently ignored.
    pub fn fields<'v>(
        &mut self,
        value: &'v Value,
        path: &KeyPath,
        allowed: &[&str],
    ) -> Option<Table<'v>> {
        let expected = format!("a mapping with keys {}", allowed.join(", "));
        let table = self.names(value, path, &expected);
        let mut known = Vec::new();
        for (key, value) in table.entries {
            if allowed.contains(&key) {
                known.push((key, value));
            } else {
                self.invalid(
                    &path.key(key),
                    unknown_key_problem(key, allowed),
                    format!("one of {}", allowed.join(", ")),
                );
            }
        }
        matches!(value, Value::Mapping(_) | Value::Null).then_some(Table { entries: known })
    }

    fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &KeyPath,
        what: &str,
    ) -> Option<&'v serde_yaml_ng::Mapping> {
        match value {
            Value::Mapping(mapping) => Some(mapping),
            Value::Null => None,
            other => {
                self.invalid_value(path, format!("{} is not a mapping", describe(other)), what);
                None
            }
        }
    }

    pub fn bool(&mut self, value: &Value, path: &KeyPath) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.invalid_value(
                    path,
                    format!("{} is not a boolean", describe(other)),
                    "true or false",
                );
                None
            }
        }
    }

    /// A list; `expected` describes its items.
    pub fn list<'v>(
        &mut self,
        value: &'v Value,
        path: &KeyPath,
        expected: &str,
    ) -> Option<&'v [Value]> {
        match value {
            Value::Sequence(items) => Some(items),
            other => {
                self.invalid_value(
                    path,
                    format!("{} is not a list", describe(other)),
                    format!("a list of {expected}, such as [{}]", example_of(expected)),
                );
                None
            }
        }
    }

    /// A scalar (string or number) parsed by `parse`; its errors are located at the value.
    pub fn parsed<T>(
        &mut self,
        value: &Value,
        path: &KeyPath,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<T> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                // Let the parser say what it expects, from an input that cannot match.
                let expected = match parse("") {
                    Err(invalid) => invalid.expected,
                    Ok(_) => "a string".to_string(),
                };
                self.invalid_value(
                    path,
                    format!("{} is not a string", describe(other)),
                    expected,
                );
                return None;
            }
        };
        match parse(&text) {
            Ok(parsed) => Some(parsed),
            Err(invalid) => {
                self.invalid_value(path, invalid.problem, invalid.expected);
                None
            }
        }
    }
}

/// "unknown key", with "did you mean" when one allowed key is a small edit away.
fn unknown_key_problem(key: &str, allowed: &[&str]) -> String {
    match closest(key, allowed) {
        Some(candidate) => format!("unknown key (did you mean {candidate}?)"),
        None => "unknown key".to_string(),
    }
}

/// The candidate `word` is most likely a typo of: at most one edit per three characters
/// (and two at most), so short names do not get far-fetched suggestions.
pub(crate) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).clamp(1, 2);
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, for typo suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A short description of a value for messages: scalars quoted, containers by kind.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "an empty value".to_string(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) => format!("`{s}`"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// The first example in an `expected` text ("… such as X"), for list hints.
fn example_of(expected: &str) -> &str {
    expected
        .split_once("such as ")
        .map(|(_, example)| example)
        .unwrap_or("...")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\nnetworks:\n  web:\n    icc: false\n    iccc: true\n\
                        containers:\n  db: {deny: [5432/tcp, 80]}\n  my.app:\n    allow_from:\n      \
                        - 2001:db8::/32\n      - fd00::/129\n";

    fn located(path: &KeyPath) -> (usize, usize) {
        let doc = Document::parse(Path::new("p.yaml"), TEXT).unwrap();
        let at = doc.locate(path);
        (at.line, at.column)
    }

    #[test]
    fn paths_are_located_at_their_key_or_item() {
        let root = KeyPath::default();
        assert_eq!(located(&root.key("networks").key("web")), (3, 3));
        assert_eq!(
            located(&root.key("networks").key("web").key("iccc")),
            (5, 5)
        );
        let deny = root.key("containers").key("db").key("deny");
        assert_eq!(located(&deny.index(1)), (7, 25));
        let allow = root.key("containers").key("my.app").key("allow_from");
        assert_eq!(located(&allow.index(1)), (11, 9));
    }

    #[test]
    fn a_missing_path_falls_back_to_its_nearest_parent() {
        let path = KeyPath::default().key("networks").key("web").key("nat66");
        assert_eq!(located(&path), (3, 3));
        // The root mapping starts after the comment line.
        assert_eq!(located(&KeyPath::default().key("nothing")), (2, 1));
    }

    #[test]
    fn paths_print_dotted_and_quote_odd_names() {
        let path = KeyPath::default()
            .key("containers")
            .key("my.app")
            .key("deny")
            .index(2);
        assert_eq!(path.to_string(), r#"containers."my.app".deny[2]"#);
        assert_eq!(KeyPath::default().to_string(), "(top level)");
    }

    #[test]
    fn syntax_errors_carry_their_place_once() {
        let Err(error) = Document::parse(Path::new("p.yaml"), "a: [1, 2\n") else {
            panic!("parsed");
        };
        let text = error.to_string();
        assert!(text.starts_with("p.yaml:2:1: not valid YAML: "), "{text}");
        assert!(
            text.ends_with("quote values that start with ':', such as \"::/0\")"),
            "{text}"
        );
        assert!(!text.ends_with("at line 2 column 1"), "{text}");
    }

    #[test]
    fn typos_get_a_suggestion() {
        let allowed = ["icc", "nat66", "snat_address", "ndp_proxy"];
        assert_eq!(
            unknown_key_problem("iccc", &allowed),
            "unknown key (did you mean icc?)"
        );
        assert_eq!(unknown_key_problem("firewall", &allowed), "unknown key");
    }
}
