//! The planner: a sync log's items in, C's lists of actions out.
//!
//! This is the first half of `sync_do_reader` (`imap/sync_support.c`, the
//! same in 3.6.1 and 3.12.4): the item loop that fills the per-kind lists
//! and the per-user mailbox cohorts, then the redundancy rules ("Optimise out
//! redundant clauses"). The lists keep C's order and dedup (see
//! [`super::list`]). Execution is in [`super::exec`].

use std::collections::HashMap;

use super::list::ActionList;

/// The mailboxes of one user (or, with an empty userid, all non-user
/// mailboxes), synced by one `sync_do_mailboxes` call.
#[derive(Debug, Clone)]
pub struct Cohort {
    /// `mboxname_to_userid` of the mailboxes, empty for non-user mailboxes.
    pub userid: Box<[u8]>,
    pub mailboxes: ActionList,
    /// Creation order (first appearance in the log).
    seq: usize,
}

/// Order in which cohorts are executed.
///
/// C keeps cohorts in a `hash_table` of 1024 buckets whose seed comes from
/// `rand()`, which Cyrus seeds with `srand(time(NULL) * getpid())` in
/// `cyrus_init`: C's cohort order differs from run to run. Only the order
/// inside each cohort and of the other lists is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CohortOrder {
    /// First appearance in the log (deterministic; the default).
    #[default]
    FirstSeen,
    /// Exactly `hash_enumerate`'s order for a table of `size` buckets and
    /// this seed: by `strhash_seeded_djb2(seed, userid) % size`, then by
    /// `strcmp` inside a bucket. For differential tests against a C build.
    CyrusHash { seed: u32, size: u32 },
}

/// `strhash_seeded_djb2` from Cyrus's `lib/strhash.c`.
pub fn cyrus_strhash_seeded(seed: u32, key: &[u8]) -> u32 {
    let mut hash: u32 = 5381;
    let mut seed = seed;
    if seed != 0 {
        for _ in 0..4 {
            let c = seed & 0xff;
            hash = (hash << 5).wrapping_add(hash) ^ c;
            seed >>= 8;
        }
    }
    for &c in key {
        // C stops at a NUL; names never contain one.
        if c == 0 {
            break;
        }
        hash = (hash << 5).wrapping_add(hash) ^ u32::from(c);
    }
    hash
}

/// Why an item of the log was not planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// C: `Unknown action type: %s`.
    UnknownType(Vec<u8>),
    /// A kind that needs a second argument (RENAME, SEEN, SUB, UNSUB) came
    /// without one. C would dereference NULL (RENAME) or plan an action
    /// with no mailbox (SEEN/SUB); cyrsync logs and skips it.
    MissingArgument(Vec<u8>),
}

/// C's lists after the item loop and the redundancy rules.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Mailbox cohorts, in [`CohortOrder::FirstSeen`] order until
    /// [`Plan::order_cohorts`] is called.
    pub cohorts: Vec<Cohort>,
    cohort_index: HashMap<Box<[u8]>, usize>,
    pub users: ActionList,
    pub unusers: ActionList,
    pub metas: ActionList,
    pub unmailboxes: ActionList,
    pub quotas: ActionList,
    pub annotations: ActionList,
    pub seens: ActionList,
    pub subs: ActionList,
    /// Items not planned, in log order.
    pub skipped: Vec<Skipped>,
    /// Number of items fed in.
    pub items: u64,
    optimised: bool,
    last_cohort: Option<usize>,
}

/// One step of a plan, as the executor would first try it (for dry runs
/// and tests). Cohort steps carry the userid and the names from the log
/// (the executor adds former names from the name history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mailboxes {
        userid: Vec<u8>,
        names: Vec<Vec<u8>>,
    },
    Quota(Vec<u8>),
    Annotation(Vec<u8>),
    Seen {
        user: Vec<u8>,
        mailbox: Vec<u8>,
    },
    Sub {
        user: Vec<u8>,
        mailbox: Vec<u8>,
    },
    Unmailbox(Vec<u8>),
    Meta(Vec<u8>),
    User(Vec<u8>),
    Unuser(Vec<u8>),
}

impl Plan {
    pub fn new() -> Self {
        Self::default()
    }

    fn cohort(&mut self, userid: &[u8]) -> &mut ActionList {
        // Logs come in runs of one user's items: try the last cohort first.
        if let Some(i) = self.last_cohort {
            if &*self.cohorts[i].userid == userid {
                return &mut self.cohorts[i].mailboxes;
            }
        }
        let index = match self.cohort_index.get(userid) {
            Some(&i) => i,
            None => {
                let i = self.cohorts.len();
                self.cohorts.push(Cohort {
                    userid: userid.into(),
                    mailboxes: ActionList::new(),
                    seq: i,
                });
                self.cohort_index.insert(userid.into(), i);
                i
            }
        };
        self.last_cohort = Some(index);
        &mut self.cohorts[index].mailboxes
    }

    /// Feed one log item (the body of C's `while (getitem)` loop). `kind` is
    /// upper-case as the reader returns it; `to_userid` is
    /// `mboxname_to_userid`.
    pub fn add_item(
        &mut self,
        kind: &[u8],
        arg1: &[u8],
        arg2: Option<&[u8]>,
        to_userid: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) {
        debug_assert!(!self.optimised, "add_item after optimise");
        self.items += 1;
        match kind {
            b"USER" => {
                self.users.add(None, Some(arg1));
            }
            b"UNUSER" => {
                self.unusers.add(None, Some(arg1));
            }
            b"META" | b"SIEVE" => {
                self.metas.add(None, Some(arg1));
            }
            b"APPEND" | b"MAILBOX" | b"DOUBLEMAILBOX" => {
                // The reader always gives arg1, so C's "Missing mailbox
                // name" cannot happen here.
                let userid = to_userid(arg1).unwrap_or_default();
                let list = self.cohort(&userid);
                list.add(Some(arg1), None);
                if let Some(arg2) = arg2 {
                    // a copy or move: same cohort, so the order is kept
                    list.add(Some(arg2), None);
                }
            }
            b"RENAME" => {
                let Some(arg2) = arg2 else {
                    return self.missing(kind);
                };
                let userid1 = to_userid(arg1).unwrap_or_default();
                let userid2 = to_userid(arg2).unwrap_or_default();
                let list = self.cohort(&userid1);
                list.add(Some(arg1), None);
                list.add(Some(arg2), None);
                if userid1 != userid2 {
                    let list = self.cohort(&userid2);
                    list.add(Some(arg1), None);
                    list.add(Some(arg2), None);
                }
            }
            b"UNMAILBOX" => {
                self.unmailboxes.add(Some(arg1), None);
            }
            b"QUOTA" => {
                self.quotas.add(Some(arg1), None);
            }
            b"ANNOTATION" => {
                self.annotations.add(Some(arg1), None);
            }
            b"SEEN" | b"SUB" | b"UNSUB" => {
                let Some(arg2) = arg2 else {
                    return self.missing(kind);
                };
                let list = if kind == b"SEEN" {
                    &mut self.seens
                } else {
                    &mut self.subs
                };
                list.add(Some(arg2), Some(arg1));
            }
            _ => {
                log::error!("Unknown action type: {}", kind.escape_ascii());
                self.skipped.push(Skipped::UnknownType(kind.to_vec()));
            }
        }
    }

    fn missing(&mut self, kind: &[u8]) {
        log::error!("Missing second argument: {}", kind.escape_ascii());
        self.skipped.push(Skipped::MissingArgument(kind.to_vec()));
    }

    /// C's "Optimise out redundant clauses": USER removes that user's
    /// META/SEEN/SUB; UNUSER removes those and USER; META removes SEEN/SUB.
    /// Walks the lists in C's order (inactive entries included, as C does).
    pub fn optimise(&mut self) {
        if self.optimised {
            return;
        }
        self.optimised = true;
        for i in 0..self.users.len() {
            let user: Box<[u8]> = self.users.get(i).user_bytes().into();
            self.metas.remove_user(&user);
            self.seens.remove_user(&user);
            self.subs.remove_user(&user);
        }
        for i in 0..self.unusers.len() {
            let user: Box<[u8]> = self.unusers.get(i).user_bytes().into();
            self.metas.remove_user(&user);
            self.seens.remove_user(&user);
            self.subs.remove_user(&user);
            self.users.remove_user(&user);
        }
        for i in 0..self.metas.len() {
            let user: Box<[u8]> = self.metas.get(i).user_bytes().into();
            self.seens.remove_user(&user);
            self.subs.remove_user(&user);
        }
    }

    /// Reorder the cohorts.
    pub fn order_cohorts(&mut self, order: CohortOrder) {
        self.last_cohort = None;
        match order {
            CohortOrder::FirstSeen => {
                self.cohorts.sort_by_key(|c| c.seq);
            }
            CohortOrder::CyrusHash { seed, size } => {
                let size = size.max(1);
                self.cohorts.sort_by(|a, b| {
                    let ba = cyrus_strhash_seeded(seed, &a.userid) % size;
                    let bb = cyrus_strhash_seeded(seed, &b.userid) % size;
                    ba.cmp(&bb).then_with(|| a.userid.cmp(&b.userid))
                });
            }
        }
        for (i, c) in self.cohorts.iter().enumerate() {
            self.cohort_index.insert(c.userid.clone(), i);
        }
    }

    /// The steps the executor would try first, in order, if every call
    /// answered OK (no promotions).
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for c in &self.cohorts {
            let names: Vec<Vec<u8>> = c
                .mailboxes
                .active()
                .map(|a| a.name_bytes().to_vec())
                .collect();
            if !names.is_empty() {
                steps.push(Step::Mailboxes {
                    userid: c.userid.to_vec(),
                    names,
                });
            }
        }
        let name = |a: &super::list::Action| a.name_bytes().to_vec();
        let user = |a: &super::list::Action| a.user_bytes().to_vec();
        steps.extend(self.quotas.active().map(|a| Step::Quota(name(a))));
        steps.extend(self.annotations.active().map(|a| Step::Annotation(name(a))));
        steps.extend(self.seens.active().map(|a| Step::Seen {
            user: user(a),
            mailbox: name(a),
        }));
        steps.extend(self.subs.active().map(|a| Step::Sub {
            user: user(a),
            mailbox: name(a),
        }));
        steps.extend(self.unmailboxes.active().map(|a| Step::Unmailbox(name(a))));
        steps.extend(self.metas.active().map(|a| Step::Meta(user(a))));
        steps.extend(self.users.active().map(|a| Step::User(user(a))));
        steps.extend(self.unusers.active().map(|a| Step::Unuser(user(a))));
        steps
    }
}

/// Plan a whole item stream: feed every item, then apply the redundancy
/// rules.
pub fn plan_items<'a, I>(items: I, to_userid: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>) -> Plan
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8], Option<&'a [u8]>)>,
{
    let mut plan = Plan::new();
    for (kind, a1, a2) in items {
        plan.add_item(kind, a1, a2, to_userid);
    }
    plan.optimise();
    plan
}

/// Split an internal mailbox name the way Cyrus's default namespace does:
/// `[domain!][DELETED.]user.<local>[.sub...]`. Returns (local part as
/// stored, domain, rest after the user's INBOX, deleted).
/// (local part, domain, rest after the INBOX, deleted)
type IntnameParts<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8], bool);

fn split_intname(name: &[u8]) -> Option<IntnameParts<'_>> {
    let (domain, rest) = match name.iter().position(|&b| b == b'!') {
        Some(i) => (Some(&name[..i]), &name[i + 1..]),
        None => (None, name),
    };
    let (deleted, rest) = match rest.strip_prefix(b"DELETED.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.strip_prefix(b"user.")?;
    let end = rest.iter().position(|&b| b == b'.').unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    Some((&rest[..end], domain, &rest[end..], deleted))
}

/// A stand-in for Cyrus's `mboxname_to_userid` for internal names in the
/// default configuration (`user.` prefix, `DELETED.` delete prefix, `!`
/// before a virtual domain, `^` for a dot in a user name). Used by the dry
/// run and the tests; a Cyrus host passes its own function.
pub fn default_mboxname_to_userid(name: &[u8]) -> Option<Vec<u8>> {
    let (local, domain, _, _) = split_intname(name)?;
    let mut userid: Vec<u8> = local
        .iter()
        .map(|&b| if b == b'^' { b'.' } else { b })
        .collect();
    if let Some(d) = domain {
        userid.push(b'@');
        userid.extend_from_slice(d);
    }
    Some(userid)
}

/// A stand-in for `mboxname_isusermailbox(name, 1) != NULL`: the name is a
/// user's INBOX (not a sub-folder, not deleted).
pub fn default_is_user_inbox(name: &[u8]) -> bool {
    matches!(split_intname(name), Some((_, _, rest, false)) if rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userids() {
        let f = default_mboxname_to_userid;
        assert_eq!(f(b"user.foo"), Some(b"foo".to_vec()));
        assert_eq!(f(b"user.foo.Sent"), Some(b"foo".to_vec()));
        assert_eq!(f(b"user.f^o"), Some(b"f.o".to_vec()));
        assert_eq!(
            f(b"example.com!user.foo.x"),
            Some(b"foo@example.com".to_vec())
        );
        assert_eq!(f(b"DELETED.user.foo.x.5F00"), Some(b"foo".to_vec()));
        assert_eq!(f(b"shared.stuff"), None);
        assert_eq!(f(b"user"), None);
        assert!(default_is_user_inbox(b"user.foo"));
        assert!(!default_is_user_inbox(b"user.foo.Sent"));
        assert!(!default_is_user_inbox(b"shared"));
    }

    #[test]
    fn strhash_matches_c() {
        // djb2-xor without seed: 5381 * 33 ^ 'a' = 177604 ^ 97.
        assert_eq!(cyrus_strhash_seeded(0, b"a"), (5381u32 * 33) ^ 97);
        assert_eq!(cyrus_strhash_seeded(0, b""), 5381);
    }
}

/// A straightforward port of C's item loop and redundancy rules over
/// [`super::list::reference::LinearList`] (quadratic). For differential
/// tests and the benchmark only.
#[doc(hidden)]
pub mod reference {
    use std::collections::HashMap;

    use super::super::list::reference::LinearList;
    use super::Step;

    #[derive(Default)]
    pub struct LinearPlan {
        pub cohorts: Vec<(Vec<u8>, LinearList)>,
        index: HashMap<Vec<u8>, usize>,
        pub users: LinearList,
        pub unusers: LinearList,
        pub metas: LinearList,
        pub unmailboxes: LinearList,
        pub quotas: LinearList,
        pub annotations: LinearList,
        pub seens: LinearList,
        pub subs: LinearList,
    }

    impl LinearPlan {
        fn cohort(&mut self, userid: Vec<u8>) -> &mut LinearList {
            let n = self.cohorts.len();
            let i = *self.index.entry(userid.clone()).or_insert(n);
            if i == n {
                self.cohorts.push((userid, LinearList::default()));
            }
            &mut self.cohorts[i].1
        }

        pub fn add_item(
            &mut self,
            kind: &[u8],
            a1: &[u8],
            a2: Option<&[u8]>,
            to_userid: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
        ) {
            match kind {
                b"USER" => self.users.add(None, Some(a1)),
                b"UNUSER" => self.unusers.add(None, Some(a1)),
                b"META" | b"SIEVE" => self.metas.add(None, Some(a1)),
                b"APPEND" | b"MAILBOX" | b"DOUBLEMAILBOX" => {
                    let u = to_userid(a1).unwrap_or_default();
                    let l = self.cohort(u);
                    l.add(Some(a1), None);
                    if let Some(a2) = a2 {
                        l.add(Some(a2), None);
                    }
                }
                b"RENAME" => {
                    let Some(a2) = a2 else { return };
                    let u1 = to_userid(a1).unwrap_or_default();
                    let u2 = to_userid(a2).unwrap_or_default();
                    let differ = u1 != u2;
                    let l = self.cohort(u1);
                    l.add(Some(a1), None);
                    l.add(Some(a2), None);
                    if differ {
                        let l = self.cohort(u2);
                        l.add(Some(a1), None);
                        l.add(Some(a2), None);
                    }
                }
                b"UNMAILBOX" => self.unmailboxes.add(Some(a1), None),
                b"QUOTA" => self.quotas.add(Some(a1), None),
                b"ANNOTATION" => self.annotations.add(Some(a1), None),
                b"SEEN" => {
                    if let Some(a2) = a2 {
                        self.seens.add(Some(a2), Some(a1))
                    }
                }
                b"SUB" | b"UNSUB" => {
                    if let Some(a2) = a2 {
                        self.subs.add(Some(a2), Some(a1))
                    }
                }
                _ => {}
            }
        }

        pub fn optimise(&mut self) {
            let users: Vec<Vec<u8>> = self
                .users
                .items
                .iter()
                .map(|a| a.user_bytes().to_vec())
                .collect();
            for u in &users {
                self.metas.remove_user(u);
                self.seens.remove_user(u);
                self.subs.remove_user(u);
            }
            let unusers: Vec<Vec<u8>> = self
                .unusers
                .items
                .iter()
                .map(|a| a.user_bytes().to_vec())
                .collect();
            for u in &unusers {
                self.metas.remove_user(u);
                self.seens.remove_user(u);
                self.subs.remove_user(u);
                self.users.remove_user(u);
            }
            let metas: Vec<Vec<u8>> = self
                .metas
                .items
                .iter()
                .map(|a| a.user_bytes().to_vec())
                .collect();
            for u in &metas {
                self.seens.remove_user(u);
                self.subs.remove_user(u);
            }
        }

        pub fn steps(&self) -> Vec<Step> {
            let act = |l: &LinearList| {
                l.items
                    .iter()
                    .filter(|a| a.active)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let mut steps = Vec::new();
            for (u, l) in &self.cohorts {
                let names: Vec<Vec<u8>> = act(l).iter().map(|a| a.name_bytes().to_vec()).collect();
                if !names.is_empty() {
                    steps.push(Step::Mailboxes {
                        userid: u.clone(),
                        names,
                    });
                }
            }
            for a in act(&self.quotas) {
                steps.push(Step::Quota(a.name_bytes().to_vec()));
            }
            for a in act(&self.annotations) {
                steps.push(Step::Annotation(a.name_bytes().to_vec()));
            }
            for a in act(&self.seens) {
                steps.push(Step::Seen {
                    user: a.user_bytes().to_vec(),
                    mailbox: a.name_bytes().to_vec(),
                });
            }
            for a in act(&self.subs) {
                steps.push(Step::Sub {
                    user: a.user_bytes().to_vec(),
                    mailbox: a.name_bytes().to_vec(),
                });
            }
            for a in act(&self.unmailboxes) {
                steps.push(Step::Unmailbox(a.name_bytes().to_vec()));
            }
            for a in act(&self.metas) {
                steps.push(Step::Meta(a.user_bytes().to_vec()));
            }
            for a in act(&self.users) {
                steps.push(Step::User(a.user_bytes().to_vec()));
            }
            for a in act(&self.unusers) {
                steps.push(Step::Unuser(a.user_bytes().to_vec()));
            }
            steps
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::reference::LinearPlan;
    use super::*;
    use proptest::prelude::*;

    fn item() -> impl Strategy<Value = (usize, u8, u8, Option<u8>)> {
        (0usize..14, 0u8..4, 0u8..6, proptest::option::of(0u8..6))
    }

    const KINDS: [&[u8]; 14] = [
        b"USER",
        b"UNUSER",
        b"META",
        b"SIEVE",
        b"APPEND",
        b"MAILBOX",
        b"DOUBLEMAILBOX",
        b"RENAME",
        b"UNMAILBOX",
        b"QUOTA",
        b"ANNOTATION",
        b"SEEN",
        b"SUB",
        b"UNSUB",
    ];

    /// A mailbox name of a few users and a shared area.
    fn mbox(user: u8, sub: u8) -> Vec<u8> {
        let mut n = if user == 3 {
            b"shared".to_vec()
        } else {
            format!("user.u{user}").into_bytes()
        };
        if sub > 0 {
            n.extend_from_slice(format!(".f{sub}").as_bytes());
        }
        n
    }

    proptest! {
        /// The hash-based planner makes exactly the plan of the quadratic
        /// port of C's list logic, on random logs.
        #[test]
        fn hash_planner_equals_linear_port(items in proptest::collection::vec(item(), 0..120)) {
            let mut fast = Plan::new();
            let mut slow = LinearPlan::default();
            for (k, user, sub, sub2) in items {
                let kind = KINDS[k];
                let (a1, a2): (Vec<u8>, Option<Vec<u8>>) = match kind {
                    b"USER" | b"UNUSER" | b"META" | b"SIEVE" => (format!("u{user}").into_bytes(), None),
                    b"SEEN" | b"SUB" | b"UNSUB" => {
                        (format!("u{user}").into_bytes(), sub2.map(|s| mbox(s % 4, sub)))
                    }
                    _ => (mbox(user, sub), sub2.map(|s| mbox(s % 4, s))),
                };
                let mut f = default_mboxname_to_userid;
                fast.add_item(kind, &a1, a2.as_deref(), &mut f);
                slow.add_item(kind, &a1, a2.as_deref(), &mut f);
            }
            fast.optimise();
            slow.optimise();
            prop_assert_eq!(fast.steps(), slow.steps());
        }
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn reordering_keeps_lookups_and_first_seen_order() {
        let mut plan = Plan::new();
        let mut f = default_mboxname_to_userid;
        for u in ["c", "a", "b"] {
            plan.add_item(b"MAILBOX", format!("user.{u}").as_bytes(), None, &mut f);
        }
        plan.order_cohorts(CohortOrder::CyrusHash { seed: 0, size: 1 });
        let ids: Vec<&[u8]> = plan.cohorts.iter().map(|c| &*c.userid).collect();
        assert_eq!(ids, [&b"a"[..], b"b", b"c"]);
        // still finds the right cohort after the reorder
        plan.add_item(b"MAILBOX", b"user.c.x", None, &mut f);
        plan.order_cohorts(CohortOrder::FirstSeen);
        let ids: Vec<&[u8]> = plan.cohorts.iter().map(|c| &*c.userid).collect();
        assert_eq!(ids, [&b"c"[..], b"a", b"b"]);
        assert_eq!(plan.cohorts[0].mailboxes.len(), 2);
    }
}
