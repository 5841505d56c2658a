//! Label selectors: the small Kubernetes-style language placement policies are written in.
//!
//! Grammar accepted by [`LabelSelector::parse`] (whitespace around tokens is ignored):
//!
//! | text                 | meaning                                   |
//! |----------------------|-------------------------------------------|
//! | `key in (a, b)`      | label present and its value is `a` or `b` |
//! | `key notin (a, b)`   | label absent, or its value is neither     |
//! | `key=value`, `key==value` | same as `key in (value)`             |
//! | `key!=value`         | same as `key notin (value)`               |
//! | `key`                | label present (any value)                 |
//! | `!key`               | label absent                              |
//!
//! `in`/`notin` are case-insensitive; `not in` is accepted as a spelling of `notin`.
//! Keys and values may contain ASCII letters, digits and `. _ - /`; anything else is rejected
//! so that a typo fails loudly instead of silently matching nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How a [`LabelSelector`] compares a node's label with its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOp {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present (values are ignored).
    Exists,
    /// The label is absent (values are ignored).
    DoesNotExist,
}

/// One condition on a node's labels, e.g. `tier=ssd` or `zone in (a,b)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelSelector {
    /// Label key the condition looks at.
    pub key: String,
    /// Comparison to apply.
    pub op: SelectorOp,
    /// Values for `In`/`NotIn`; empty for `Exists`/`DoesNotExist`.
    pub values: Vec<String>,
}

/// Why a selector string could not be parsed. The message names the offending input so an
/// operator can fix a policy from the error alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SelectorError {
    /// The selector text was empty or only whitespace.
    #[error("empty label selector")]
    Empty,
    /// A key was missing or contained a character outside `[A-Za-z0-9._/-]`.
    #[error("invalid label key {0:?} (allowed: letters, digits, '.', '_', '-', '/')")]
    InvalidKey(String),
    /// A value was empty or contained a character outside `[A-Za-z0-9._/-]`.
    #[error("invalid label value {0:?} (allowed: letters, digits, '.', '_', '-', '/')")]
    InvalidValue(String),
    /// An `in`/`notin` list was not of the form `(v1, v2, ...)` with at least one value.
    #[error("malformed value list in {0:?}: expected `key in (v1, v2, ...)`")]
    MalformedList(String),
    /// The text did not match any selector form.
    #[error("unrecognised label selector {0:?}: expected `k=v`, `k!=v`, `k in (..)`, `k notin (..)`, `k` or `!k`")]
    Unrecognised(String),
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

fn key(s: &str) -> Result<String, SelectorError> {
    let s = s.trim();
    if valid_token(s) {
        Ok(s.to_string())
    } else {
        Err(SelectorError::InvalidKey(s.to_string()))
    }
}

fn value(s: &str) -> Result<String, SelectorError> {
    let s = s.trim();
    if valid_token(s) {
        Ok(s.to_string())
    } else {
        Err(SelectorError::InvalidValue(s.to_string()))
    }
}

/// Parses `(a, b, c)` into its values.
fn value_list(text: &str, whole: &str) -> Result<Vec<String>, SelectorError> {
    let t = text.trim();
    let inner = t
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError::MalformedList(whole.to_string()))?;
    if inner.trim().is_empty() {
        return Err(SelectorError::MalformedList(whole.to_string()));
    }
    inner.split(',').map(value).collect()
}

/// Splits `text` at the first whitespace-delimited occurrence of `word` (case-insensitive).
/// Returns the text before and after the word.
fn split_word<'a>(text: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(rel) = lower[from..].find(word) {
        let at = from + rel;
        let end = at + word.len();
        let before_ok = at > 0 && lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after_ok = end < lower.len()
            && (lower.as_bytes()[end].is_ascii_whitespace() || lower.as_bytes()[end] == b'(');
        if before_ok && after_ok {
            return Some((&text[..at], &text[end..]));
        }
        from = end;
    }
    None
}

impl LabelSelector {
    /// `key in (values...)`.
    pub fn is_in(key: impl Into<String>, values: &[&str]) -> Self {
        Self {
            key: key.into(),
            op: SelectorOp::In,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// `key notin (values...)`.
    pub fn not_in(key: impl Into<String>, values: &[&str]) -> Self {
        Self {
            key: key.into(),
            op: SelectorOp::NotIn,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    /// `key` (label present).
    pub fn exists(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            op: SelectorOp::Exists,
            values: Vec::new(),
        }
    }

    /// `!key` (label absent).
    pub fn does_not_exist(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            op: SelectorOp::DoesNotExist,
            values: Vec::new(),
        }
    }

    /// Parses the textual form described in the module docs.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(SelectorError::Empty);
        }
        // Set-based forms first: their values may not contain '=' or '!', so checking them
        // before the equality forms cannot misparse.
        if let Some((k, rest)) = split_word(t, "notin") {
            return Ok(Self {
                key: key(k)?,
                op: SelectorOp::NotIn,
                values: value_list(rest, t)?,
            });
        }
        if let Some((k, rest)) = split_word(t, "not in") {
            return Ok(Self {
                key: key(k)?,
                op: SelectorOp::NotIn,
                values: value_list(rest, t)?,
            });
        }
        if let Some((k, rest)) = split_word(t, "in") {
            return Ok(Self {
                key: key(k)?,
                op: SelectorOp::In,
                values: value_list(rest, t)?,
            });
        }
        if let Some((k, v)) = t.split_once("!=") {
            return Ok(Self {
                key: key(k)?,
                op: SelectorOp::NotIn,
                values: vec![value(v)?],
            });
        }
        if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
            return Ok(Self {
                key: key(k)?,
                op: SelectorOp::In,
                values: vec![value(v)?],
            });
        }
        if let Some(k) = t.strip_prefix('!') {
            return Ok(Self::does_not_exist(key(k)?));
        }
        if valid_token(t) {
            return Ok(Self::exists(t));
        }
        Err(SelectorError::Unrecognised(t.to_string()))
    }

    /// Whether a node with these labels (and this zone) satisfies the selector.
    ///
    /// The key `zone` falls back to the node's zone when no label of that name exists, so a
    /// policy can say `zone in (a,b)` without operators duplicating the zone as a label.
    pub fn matches(&self, labels: &BTreeMap<String, String>, zone: Option<&str>) -> bool {
        let v = labels
            .get(&self.key)
            .map(String::as_str)
            .or(if self.key == "zone" { zone } else { None });
        match self.op {
            SelectorOp::In => v.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOp::NotIn => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            SelectorOp::Exists => v.is_some(),
            SelectorOp::DoesNotExist => v.is_none(),
        }
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Prints the canonical form, which [`LabelSelector::parse`] reads back to an equal selector.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            SelectorOp::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            SelectorOp::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            SelectorOp::Exists => write!(f, "{}", self.key),
            SelectorOp::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}
