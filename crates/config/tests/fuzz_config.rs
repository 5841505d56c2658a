//! Property-based fuzzing of every environment setting (issue 10 item 8): an arbitrary value in
//! any setting (or several) must either load or fail with an error naming a setting that was
//! set, never panic; a loaded configuration's derived values (seeds, labels, placement) must
//! be usable without further errors.
//!
//! Budget: proptest's default (256 cases per property); longer runs:
//! `PROPTEST_CASES=100000 cargo test -p cairn-config --test fuzz_config` (docs/TESTING.md).

use cairn_config::{Config, ConfigError, ServerFlags, SETTINGS};
use proptest::prelude::*;

/// Values an operator (or a confused script) might put in an environment variable.
fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Anything printable, including quotes, brackets and TOML-looking syntax.
        "[^\u{0}]{0,30}",
        // Numbers of every size and sign, with or without noise.
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{1,25}",
        "-?[0-9]{1,5}\\.[0-9]{0,3}(e[+-]?[0-9]{1,4})?",
        Just("true".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("\"quoted\"".to_string()),
        // Shapes of the list settings.
        "([a-z0-9.]{0,6}(:[0-9]{0,6})?(=[a-z]{0,3})?[,;] ?){0,4}",
        "[a-z]{1,4} (in|notin|not in) \\([a-z,]{0,8}\\)",
    ]
}

fn setting() -> impl Strategy<Value = &'static str> {
    (0..SETTINGS.len()).prop_map(|i| SETTINGS[i])
}

/// Loads with exactly `env` set (in a figment jail: a private environment and directory).
#[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
fn load(env: &[(&str, String)]) -> Result<Config, ConfigError> {
    let mut result = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (k, v) in env {
            jail.set_env(k.to_uppercase(), v);
        }
        result = Some(Config::load(&ServerFlags::default()));
        Ok(())
    });
    result.expect("the jail ran the closure")
}

fn check(env: &[(&str, String)]) -> Result<(), TestCaseError> {
    match load(env) {
        Ok(cfg) => {
            // Validation already parsed these; using them must not fail now.
            prop_assert!(cfg.labels().is_ok());
            prop_assert!(cfg.placement().is_ok());
            prop_assert!(cfg.join_token_accept().is_ok());
            prop_assert!(cfg.seeds().iter().all(|s| s.contains(':')));
            prop_assert!(cfg.partitions.is_power_of_two());
        }
        Err(e) => {
            let text = e.to_string();
            prop_assert!(
                env.iter().any(|(k, _)| text.contains(&k.to_uppercase())),
                "error {text:?} names none of {env:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn fuzz_config_one_setting(name in setting(), value in env_value()) {
        // STORAGE_PATH is a path: any text is one, and loading never touches the disk.
        check(&[(name, value)])?;
    }

    #[test]
    fn fuzz_config_several_settings(env in proptest::collection::vec((setting(), env_value()), 1..5)) {
        let mut env = env;
        // One value per name, as in a real environment.
        env.sort_by_key(|(k, _)| *k);
        env.dedup_by_key(|(k, _)| *k);
        check(&env)?;
    }
}
