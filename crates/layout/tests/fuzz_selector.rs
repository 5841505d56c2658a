//! Property-based fuzzing of label selectors (issue 10 item 8): placement policies come from
//! operators' settings and the management API, so any text must parse or be refused with an
//! error, never panic; what parses must print back to text that parses to the same selector;
//! and `matches` must agree with a direct reading of the operator.
//!
//! Budget: proptest's default (256 cases per property); longer runs:
//! `PROPTEST_CASES=100000 cargo test -p cairn-layout --test fuzz_selector` (docs/TESTING.md).

use std::collections::BTreeMap;

use cairn_layout::{LabelSelector, SelectorOp};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._/-]{1,12}"
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    let values = || proptest::collection::vec(token(), 1..4);
    prop_oneof![
        (token(), values()).prop_map(|(k, v)| LabelSelector {
            key: k,
            op: SelectorOp::In,
            values: v
        }),
        (token(), values()).prop_map(|(k, v)| LabelSelector {
            key: k,
            op: SelectorOp::NotIn,
            values: v
        }),
        token().prop_map(LabelSelector::exists),
        token().prop_map(LabelSelector::does_not_exist),
    ]
}

/// Selector-shaped text: the operators and separators of the grammar, tokens, and noise.
fn selector_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        token(),
        Just(" in ".to_string()),
        Just(" IN(".to_string()),
        Just(" notin ".to_string()),
        Just(" not in ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just("=".to_string()),
        Just("==".to_string()),
        Just("!=".to_string()),
        Just("!".to_string()),
        Just(" ".to_string()),
        "\\PC{1,3}",
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..8).prop_map(|p| p.concat()),
        ".{0,40}",
    ]
}

fn naive_matches(s: &LabelSelector, labels: &BTreeMap<String, String>, zone: Option<&str>) -> bool {
    let v = match labels.get(&s.key) {
        Some(v) => Some(v.as_str()),
        None if s.key == "zone" => zone,
        None => None,
    };
    match (s.op, v) {
        (SelectorOp::In, Some(v)) => s.values.iter().any(|x| x == v),
        (SelectorOp::In, None) => false,
        (SelectorOp::NotIn, Some(v)) => s.values.iter().all(|x| x != v),
        (SelectorOp::NotIn, None) => true,
        (SelectorOp::Exists, v) => v.is_some(),
        (SelectorOp::DoesNotExist, v) => v.is_none(),
    }
}

proptest! {
    #[test]
    fn fuzz_selector_text_parses_or_errors(text in selector_text()) {
        match LabelSelector::parse(&text) {
            Ok(s) => {
                prop_assert!(valid(&s.key), "{text:?} gave key {:?}", s.key);
                prop_assert!(s.values.iter().all(|v| valid(v)), "{text:?} gave {:?}", s.values);
                match s.op {
                    SelectorOp::In | SelectorOp::NotIn => prop_assert!(!s.values.is_empty()),
                    SelectorOp::Exists | SelectorOp::DoesNotExist => prop_assert!(s.values.is_empty()),
                }
                // Whatever parses has a canonical form that reads back the same.
                let again = LabelSelector::parse(&s.to_string());
                prop_assert_eq!(again.as_ref(), Ok(&s), "{} from {:?}", s, text);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn fuzz_selector_display_round_trips(s in selector()) {
        prop_assert_eq!(LabelSelector::parse(&s.to_string()), Ok(s.clone()));
        // The short equality forms mean the same as their set forms.
        if s.values.len() == 1 {
            let short = match s.op {
                SelectorOp::In => Some(format!("{} = {}", s.key, s.values[0])),
                SelectorOp::NotIn => Some(format!("{}!={}", s.key, s.values[0])),
                _ => None,
            };
            if let Some(short) = short {
                prop_assert_eq!(LabelSelector::parse(&short), Ok(s.clone()));
            }
        }
    }

    #[test]
    fn fuzz_selector_matches_the_naive_model(
        s in selector(),
        labels in proptest::collection::btree_map(prop_oneof![token(), Just("zone".to_string())], token(), 0..4),
        zone in proptest::option::of(token()),
        reuse in any::<bool>(),
    ) {
        // Half the time, give the node the selector's own key and one of its values.
        let mut labels = labels;
        if reuse {
            labels.insert(s.key.clone(), s.values.first().cloned().unwrap_or_else(|| "x".into()));
        }
        prop_assert_eq!(s.matches(&labels, zone.as_deref()), naive_matches(&s, &labels, zone.as_deref()));
    }
}

// ---- selector sets (`zone=a,disk!=hdd`: the node picker of `cairn node exec`) ----

proptest! {
    #[test]
    fn fuzz_selector_set_text_parses_or_errors(
        parts in proptest::collection::vec(selector_text(), 0..4),
        junk in "[ ,()*=!a-z]{0,12}",
    ) {
        let text = format!("{}{junk}", parts.join(","));
        if let Ok(set) = cairn_layout::SelectorSet::parse(&text) {
            // What parses prints back to the same set.
            prop_assert_eq!(cairn_layout::SelectorSet::parse(&set.to_string()), Ok(set));
        }
    }

    #[test]
    fn fuzz_selector_set_is_a_conjunction(
        sels in proptest::collection::vec(selector(), 1..4),
        labels in proptest::collection::btree_map(token(), token(), 0..4),
        zone in proptest::option::of(token()),
    ) {
        let text = sels.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let set = cairn_layout::SelectorSet::parse(&text).unwrap();
        prop_assert_eq!(&set.0, &sels);
        prop_assert_eq!(
            set.matches(&labels, zone.as_deref()),
            sels.iter().all(|s| naive_matches(s, &labels, zone.as_deref()))
        );
    }
}
