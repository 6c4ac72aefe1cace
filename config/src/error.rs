//! The errors of loading a config file: one [`ConfigError`] per problem, each naming
//! the file, the line and the key, and [`ConfigErrors`], all the problems of one file.

use std::fmt;

/// What kind of problem a [`ConfigError`] is, for callers that treat them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Read,
    /// The file is not valid TOML (syntax, duplicate key).
    Syntax,
    /// A key this config does not know (often a typo).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong type (a string where a number belongs) or out of the
    /// range of its type.
    WrongType,
    /// A value of the right type that is not allowed (bad port, unknown baud rate).
    InvalidValue,
    /// A file named by the config does not exist or is empty; see [`crate::check_files`].
    MissingFile,
}

/// One problem in a config file. Displays as `file:line: message`, e.g.
/// `agent.toml:3: unknown key 'terminal_idd' in [store]`; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", LineSuffix(*.line))]
pub struct ConfigError {
    /// The file as the caller named it (the path the user typed).
    pub file: String,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// Key path of the offending value, such as `scanner[1].baud` or
    /// `program.accrual_bp` (array indexes start at 0), when known.
    pub key: Option<String>,
    /// What is wrong, for a person to read; it starts with the key when there is one.
    pub message: String,
    /// The class of the problem.
    pub kind: ErrorKind,
}

/// Formats `:LINE` when the line is known, nothing otherwise.
struct LineSuffix(Option<usize>);

impl fmt::Display for LineSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, ":{line}"),
            None => Ok(()),
        }
    }
}

/// Every problem found in one file, in file order as far as known. Displays one
/// problem per line. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(
    /// The problems, in order.
    pub Vec<ConfigError>,
);

impl ConfigErrors {
    /// A single problem.
    pub fn one(error: ConfigError) -> Self {
        Self(vec![error])
    }

    /// The problems, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no problem (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
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

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, message: &str) -> ConfigError {
        ConfigError {
            file: "agent.toml".into(),
            line,
            key: None,
            message: message.into(),
            kind: ErrorKind::InvalidValue,
        }
    }

    #[test]
    fn display_is_file_colon_line_colon_message() {
        assert_eq!(error(Some(3), "boom").to_string(), "agent.toml:3: boom");
        assert_eq!(error(None, "boom").to_string(), "agent.toml: boom");
    }

    #[test]
    fn errors_display_one_per_line() {
        let all = ConfigErrors(vec![error(Some(1), "a"), error(Some(2), "b")]);
        assert_eq!(all.to_string(), "agent.toml:1: a\nagent.toml:2: b");
    }
}
