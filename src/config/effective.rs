//! `check-config`'s view of a [`Config`]: every setting's effective value
//! as it would be written, in the table's order, with secrets masked. Each
//! row of the table says how its value is shown; this file lists them and
//! holds the shared ways of showing.

use super::Config;
use super::table::SETTINGS;

impl Config {
    /// Every setting's effective value, as it would be written, with
    /// secrets masked.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        SETTINGS.iter().map(|s| (s.name, (s.show)(self))).collect()
    }
}

/// How many secrets are configured, never what they are.
pub(super) fn masked(n: usize) -> String {
    if n == 0 {
        "(none)".to_owned()
    } else {
        format!("*** ({n} configured)")
    }
}

/// A list, comma-separated, or `(none)`.
pub(super) fn none_if_empty(items: Vec<String>) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}
