//! Errors and warnings about configuration, each pointing at the place a person must edit.
//!
//! Every error about a value reads `FILE:LINE:COLUMN: KEY: what is wrong; expected WHAT`, the
//! format editors and CI logs turn into links. Loading collects every error it finds
//! ([`ConfigErrors`]) so one run of `v6guard check-config` shows them all.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

/// A place in a configuration file. Lines and columns count from 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One thing wrong with a configuration or policy file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or directory exists (or was named explicitly) but cannot be read.
    #[error("{}: cannot read: {source}; expected {expected}", path.display())]
    Read {
        path: PathBuf,
        expected: &'static str,
        #[source]
        source: io::Error,
    },
    /// The text is not YAML at all; nothing in the file can be trusted.
    #[error("{at}: not valid YAML: {message}")]
    Syntax { at: Location, message: String },
    /// A key or value that is YAML but not a valid setting.
    #[error("{at}: {key}: {problem}; expected {expected}")]
    Invalid {
        at: Location,
        /// The dotted path of the key, e.g. `networks.web.icc` or `containers.db.deny[1]`.
        key: String,
        problem: String,
        expected: String,
    },
}

impl ConfigError {
    /// Where the error is, when it is inside a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { at, .. } | ConfigError::Invalid { at, .. } => Some(at),
        }
    }
}

/// Every error found while loading, in file order. Never empty when returned as an error.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was found wrong, else every error.
    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line, so the output reads like a compiler's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something worth telling the operator that does not stop v6guard: a policy naming a network
/// no one has created yet, or a label the policy file overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// The policy file entry concerned, when there is one.
    pub at: Option<Location>,
    /// What the warning is about: `networks.web`, `label v6guard.expose`.
    pub subject: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{}: {}", self.subject, self.message)
    }
}
