//! What the host itself saw a component move, per handle and table: the rows its cursors
//! delivered and the rows its bulk loads were told by the database they accepted. The job's
//! ledger ([`crate::job`]) reads these instead of the counts the component reports.

use std::collections::HashMap;

/// Rows moved through one handle, per table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows the host's cursors delivered, per source table.
    pub delivered: HashMap<String, u64>,
    /// Rows the database accepted from the host's bulk loads, per target table.
    pub accepted: HashMap<String, u64>,
}

/// The tallies of every handle of an instance.
#[derive(Default)]
pub struct Tallies {
    by_handle: HashMap<u32, Tally>,
}

impl Tallies {
    pub fn delivered(&mut self, handle: u32, table: &str, rows: u64) {
        *self.by_handle.entry(handle).or_default().delivered.entry(table.to_string()).or_default() += rows;
    }

    pub fn accepted(&mut self, handle: u32, table: &str, rows: u64) {
        *self.by_handle.entry(handle).or_default().accepted.entry(table.to_string()).or_default() += rows;
    }

    /// What moved through `handle` (nothing, if it moved nothing).
    pub fn of(&self, handle: u32) -> Tally {
        self.by_handle.get(&handle).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_add_up_per_handle_and_table() {
        let mut t = Tallies::default();
        t.delivered(1, "users", 2);
        t.delivered(1, "users", 3);
        t.accepted(2, "users", 5);
        assert_eq!(t.of(1).delivered["users"], 5);
        assert_eq!(t.of(2).accepted["users"], 5);
        assert_eq!(t.of(3), Tally::default());
    }
}
