//! A conjunction of label selectors written as one string, the form operators type to pick
//! nodes (`cairn node exec --selector 'zone=a,disk!=hdd'`): selectors in the placement grammar
//! ([`LabelSelector`]) separated by commas; commas inside `( )` belong to an `in`/`notin` list,
//! so `zone in (a,b),tier=ssd` is two selectors. A node matches when it matches every one.
//! `*` alone selects every node.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::selector::{LabelSelector, SelectorError};

/// Every selector must match (an empty list: every node, written `*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SelectorSet(pub Vec<LabelSelector>);

/// Splits `text` at the commas outside parentheses; `Err` on unbalanced parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, SelectorError> {
    let mut parts = Vec::new();
    let mut depth: usize = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| SelectorError::MalformedList(text.to_string()))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(SelectorError::MalformedList(text.to_string()));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

impl SelectorSet {
    /// Every node.
    pub fn all() -> Self {
        Self(Vec::new())
    }

    /// Parses `sel1,sel2,...` (paren-aware) or `*`. Empty text, an empty item (`a=b,,c`) or
    /// any selector that does not parse is an error naming it.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let t = text.trim();
        if t == "*" {
            return Ok(Self::all());
        }
        if t.is_empty() {
            return Err(SelectorError::Empty);
        }
        split_top_level(t)?
            .into_iter()
            .map(LabelSelector::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether a node with these labels and zone matches every selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>, zone: Option<&str>) -> bool {
        self.0.iter().all(|s| s.matches(labels, zone))
    }
}

impl std::str::FromStr for SelectorSet {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The canonical form, which [`SelectorSet::parse`] reads back to an equal set.
impl fmt::Display for SelectorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "*");
        }
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::SelectorOp;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn commas_split_selectors_except_inside_lists() {
        let s = SelectorSet::parse("zone in (a, b), disk!=hdd ,rack").unwrap();
        assert_eq!(s.0.len(), 3);
        assert_eq!(s.0[0].op, SelectorOp::In);
        assert_eq!(s.0[0].values, vec!["a", "b"]);
        assert_eq!(s.0[1], LabelSelector::not_in("disk", &["hdd"]));
        assert_eq!(s.0[2], LabelSelector::exists("rack"));
        assert_eq!(SelectorSet::parse(" * ").unwrap(), SelectorSet::all());
    }

    #[test]
    fn bad_input_is_refused_with_the_offending_part() {
        assert_eq!(SelectorSet::parse("  "), Err(SelectorError::Empty));
        assert_eq!(SelectorSet::parse("a=b,,c"), Err(SelectorError::Empty));
        assert!(matches!(
            SelectorSet::parse("zone in (a,b"),
            Err(SelectorError::MalformedList(_))
        ));
        assert!(matches!(
            SelectorSet::parse("zone in a,b)"),
            Err(SelectorError::MalformedList(_))
        ));
        assert!(matches!(
            SelectorSet::parse("zone=a,di sk=x"),
            Err(SelectorError::InvalidKey(_) | SelectorError::Unrecognised(_))
        ));
        assert!(SelectorSet::parse("zone=a,*").is_err());
    }

    #[test]
    fn a_node_matches_when_every_selector_does() {
        let s = SelectorSet::parse("zone=a,disk!=hdd").unwrap();
        assert!(s.matches(&labels(&[("disk", "ssd")]), Some("a")));
        assert!(s.matches(&labels(&[]), Some("a")));
        assert!(!s.matches(&labels(&[("disk", "hdd")]), Some("a")));
        assert!(!s.matches(&labels(&[("disk", "ssd")]), Some("b")));
        assert!(SelectorSet::all().matches(&labels(&[]), None));
    }

    #[test]
    fn display_round_trips() {
        for text in ["*", "zone in (a,b),disk notin (hdd)", "!gpu,rack"] {
            let s = SelectorSet::parse(text).unwrap();
            assert_eq!(SelectorSet::parse(&s.to_string()).unwrap(), s);
        }
    }
}
