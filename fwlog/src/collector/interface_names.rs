//! Naming the interfaces events carry by index (`in_iface`).

use std::collections::HashMap;

use crate::interfaces;

/// Names interfaces by index, refreshing its table when it meets an index it does not know.
#[derive(Default)]
pub struct InterfaceNames {
    /// foldhash: looked up twice per event, with this machine's own indexes as keys.
    names: HashMap<u32, String, foldhash::fast::RandomState>,
}

impl InterfaceNames {
    pub fn name(&mut self, index: u32) -> Option<&str> {
        if index == 0 {
            return None;
        }
        if !self.names.contains_key(&index) {
            if let Ok(all) = interfaces::list() {
                self.names = all.into_iter().collect();
            }
        }
        self.names.get(&index).map(String::as_str)
    }
}
