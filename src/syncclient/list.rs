//! Action lists: C's `struct sync_action_list` with hash-based dedup.
//!
//! C (`sync_action_list_add` in `imap/sync_support.c`) keeps an
//! insertion-ordered linked list and, on every add, scans it from the head
//! for the first entry that matches; a match is re-activated instead of
//! added again. The match rule is asymmetric: an add without a name matches
//! any entry with the same user, an add without a user matches any entry with
//! the same name, an add with both needs both. [`ActionList`] keeps the same
//! insertion order and finds the same "first match" through three indexes,
//! so building a list of n distinct entries is O(n) instead of O(n²).
//! [`reference::LinearList`] is a line-by-line port of the C list, kept for
//! differential tests and the benchmark.

use std::collections::HashMap;

/// One entry: C's `struct sync_action` (`name`, `user`, `active`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The mailbox name (or quota root, annotation name, seen/sub mailbox).
    pub name: Option<Box<[u8]>>,
    /// The user (USER, UNUSER, META, SEEN, SUB lists).
    pub user: Option<Box<[u8]>>,
    /// Cleared by the redundancy rules (`remove_meta`), set again by a
    /// later add of the same entry.
    pub active: bool,
}

impl Action {
    /// The name, or empty.
    pub fn name_bytes(&self) -> &[u8] {
        self.name.as_deref().unwrap_or(b"")
    }
    /// The user, or empty.
    pub fn user_bytes(&self) -> &[u8] {
        self.user.as_deref().unwrap_or(b"")
    }
}

/// An insertion-ordered list of actions with C's dedup rule, in O(1) per add.
#[derive(Debug, Default, Clone)]
pub struct ActionList {
    items: Vec<Action>,
    /// First index of an entry with this name (any user). Built on the
    /// first name-only add and kept from then on: lists that never see one
    /// (SEEN, SUB, USER, ...) never pay for it.
    by_name: Option<HashMap<Box<[u8]>, u32>>,
    /// All indexes of entries with this user, ascending (any name).
    by_user: HashMap<Box<[u8]>, Indexes>,
    /// First index of an entry with exactly this (name, user), keyed by
    /// [`pair_key`].
    by_pair: HashMap<Box<[u8]>, u32>,
    /// Reused buffer for building pair keys.
    scratch: Vec<u8>,
}

/// Indexes of a user's entries: one (the usual case) without allocating.
#[derive(Debug, Clone)]
enum Indexes {
    One(u32),
    Many(Vec<u32>),
}

impl Indexes {
    fn first(&self) -> u32 {
        match self {
            Indexes::One(i) => *i,
            Indexes::Many(v) => v[0],
        }
    }
    fn push(&mut self, i: u32) {
        match self {
            Indexes::One(first) => *self = Indexes::Many(vec![*first, i]),
            Indexes::Many(v) => v.push(i),
        }
    }
    fn as_slice(&self) -> &[u32] {
        match self {
            Indexes::One(i) => std::slice::from_ref(i),
            Indexes::Many(v) => v,
        }
    }
}

/// An unambiguous single key for a (name, user) pair: the name's length,
/// the name, the user.
fn pair_key(buf: &mut Vec<u8>, name: &[u8], user: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
    buf.extend_from_slice(name);
    buf.extend_from_slice(user);
}

impl ActionList {
    pub fn new() -> Self {
        Self::default()
    }

    /// `sync_action_list_add(l, name, user)`: re-activate the first entry
    /// C's scan would match, or append a new active entry. Both `None` is a
    /// no-op, as in C. Returns the entry's index (None for the no-op).
    pub fn add(&mut self, name: Option<&[u8]>, user: Option<&[u8]>) -> Option<usize> {
        let found = match (name, user) {
            (None, None) => return None,
            (Some(n), None) => self.name_index().get(n).copied(),
            (None, Some(u)) => self.by_user.get(u).map(Indexes::first),
            (Some(n), Some(u)) => {
                pair_key(&mut self.scratch, n, u);
                self.by_pair.get(self.scratch.as_slice()).copied()
            }
        };
        if let Some(i) = found {
            self.items[i as usize].active = true;
            return Some(i as usize);
        }
        let index = u32::try_from(self.items.len()).expect("fewer than 2^32 actions");
        let name: Option<Box<[u8]>> = name.map(Into::into);
        let user: Option<Box<[u8]>> = user.map(Into::into);
        if let (Some(n), Some(by_name)) = (&name, self.by_name.as_mut()) {
            by_name.entry(n.clone()).or_insert(index);
        }
        if let Some(u) = &user {
            match self.by_user.get_mut(u) {
                Some(v) => v.push(index),
                None => {
                    self.by_user.insert(u.clone(), Indexes::One(index));
                }
            }
        }
        if let (Some(n), Some(u)) = (&name, &user) {
            pair_key(&mut self.scratch, n, u);
            let key: Box<[u8]> = self.scratch.as_slice().into();
            self.by_pair.entry(key).or_insert(index);
        }
        self.items.push(Action {
            name,
            user,
            active: true,
        });
        Some(index as usize)
    }

    /// The name index, built from the entries so far on first use.
    fn name_index(&mut self) -> &HashMap<Box<[u8]>, u32> {
        let items = &self.items;
        self.by_name.get_or_insert_with(|| {
            let mut map = HashMap::new();
            for (i, a) in items.iter().enumerate() {
                if let Some(n) = &a.name {
                    map.entry(n.clone()).or_insert(i as u32);
                }
            }
            map
        })
    }

    /// `remove_meta(user, list)`: deactivate every entry of this user.
    pub fn remove_user(&mut self, user: &[u8]) {
        if let Some(indexes) = self.by_user.get(user) {
            for &i in indexes.as_slice() {
                self.items[i as usize].active = false;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The entry at `index` (insertion order).
    pub fn get(&self, index: usize) -> &Action {
        &self.items[index]
    }

    /// All entries in insertion order, active or not.
    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.items.iter()
    }

    /// Active entries in insertion order.
    pub fn active(&self) -> impl Iterator<Item = &Action> {
        self.items.iter().filter(|a| a.active)
    }
}

/// A faithful port of C's linked-list logic, O(n) per add. For differential
/// tests and the benchmark only.
#[doc(hidden)]
pub mod reference {
    use super::Action;

    /// `struct sync_action_list` with `sync_action_list_add` and
    /// `remove_meta` exactly as in `imap/sync_support.c`.
    #[derive(Debug, Default, Clone)]
    pub struct LinearList {
        pub items: Vec<Action>,
    }

    impl LinearList {
        pub fn add(&mut self, name: Option<&[u8]>, user: Option<&[u8]>) {
            if name.is_none() && user.is_none() {
                return;
            }
            for current in self.items.iter_mut() {
                let name_ok = match name {
                    None => true,
                    Some(n) => current.name.as_deref() == Some(n),
                };
                let user_ok = match user {
                    None => true,
                    Some(u) => current.user.as_deref() == Some(u),
                };
                if name_ok && user_ok {
                    current.active = true;
                    return;
                }
            }
            self.items.push(Action {
                name: name.map(Into::into),
                user: user.map(Into::into),
                active: true,
            });
        }

        pub fn remove_user(&mut self, user: &[u8]) {
            for action in self.items.iter_mut() {
                if action.user.as_deref() == Some(user) {
                    action.active = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::LinearList;
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = (u8, Option<u8>, Option<u8>)> {
        (
            0u8..4,
            proptest::option::of(0u8..5),
            proptest::option::of(0u8..5),
        )
    }

    proptest! {
        /// Any mix of adds (all three shapes) and removes gives the same
        /// entries, order and active flags as C's linear scan.
        #[test]
        fn same_as_linear_scan(ops in proptest::collection::vec(op(), 0..80)) {
            let mut fast = ActionList::new();
            let mut slow = LinearList::default();
            for (what, n, u) in ops {
                let n = n.map(|b| vec![b'a' + b]);
                let u = u.map(|b| vec![b'A' + b]);
                if what == 0 {
                    if let Some(u) = &u {
                        fast.remove_user(u);
                        slow.remove_user(u);
                    }
                } else {
                    fast.add(n.as_deref(), u.as_deref());
                    slow.add(n.as_deref(), u.as_deref());
                }
            }
            let fast: Vec<Action> = fast.iter().cloned().collect();
            prop_assert_eq!(fast, slow.items);
        }
    }
}
