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

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

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
    by_name: Option<NameIndex>,
    /// All indexes of entries with this user, ascending (any name).
    by_user: HashMap<Box<[u8]>, Indexes>,
    /// First index of an entry with exactly this (name, user), keyed by
    /// [`pair_key`].
    by_pair: HashMap<Box<[u8]>, u32>,
    /// Reused buffer for building pair keys.
    scratch: Vec<u8>,
}

/// First entry per name, without storing the names a second time: keyed by
/// a keyed (SipHash, random per list) 64-bit hash of the name, checked
/// against the entry; a name whose hash another name already holds goes to
/// a small exact map.
#[derive(Debug, Clone, Default)]
struct NameIndex {
    hasher: RandomState,
    by_hash: HashMap<u64, u32, BuildIdentity>,
    collided: HashMap<Box<[u8]>, u32>,
}

impl NameIndex {
    fn hash(&self, name: &[u8]) -> u64 {
        let h = self.hasher.hash_one(name);
        // unit tests: only 4 hash values, so the collision path is exercised
        if cfg!(test) {
            h % 4
        } else {
            h
        }
    }

    fn get(&self, items: &[Action], name: &[u8]) -> Option<u32> {
        match self.by_hash.get(&self.hash(name)) {
            None => None,
            Some(&i) if items[i as usize].name.as_deref() == Some(name) => Some(i),
            Some(_) => self.collided.get(name).copied(),
        }
    }

    /// Record `index` for `name` unless the name already has an entry.
    fn insert(&mut self, items: &[Action], name: &[u8], index: u32) {
        let h = self.hash(name);
        match self.by_hash.get(&h) {
            None => {
                self.by_hash.insert(h, index);
            }
            Some(&i) if items[i as usize].name.as_deref() == Some(name) => {}
            Some(_) => {
                self.collided.entry(name.into()).or_insert(index);
            }
        }
    }
}

/// The hash map keys of [`NameIndex`] are already hashes.
#[derive(Debug, Clone, Copy, Default)]
struct BuildIdentity;

impl BuildHasher for BuildIdentity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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
            (Some(n), None) => {
                self.ensure_name_index();
                let index = self.by_name.as_ref().expect("just built");
                index.get(&self.items, n)
            }
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
            by_name.insert(&self.items, n, index);
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

    /// Build the name index from the entries so far, on first use.
    fn ensure_name_index(&mut self) {
        if self.by_name.is_none() {
            let mut index = NameIndex::default();
            for (i, a) in self.items.iter().enumerate() {
                if let Some(n) = &a.name {
                    index.insert(&self.items, n, i as u32);
                }
            }
            self.by_name = Some(index);
        }
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
