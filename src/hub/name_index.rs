//! Every local client, found by the keys of its name: how a direct
//! message finds its receiver, and how a name and its look-alikes are
//! known to be taken.
//!
//! A name is unique under two keys ([`Name::key`] and
//! [`Name::shape_key`]), and a device's or a guest's name has keys that
//! differ from it (`guest-1241` is `guest-l24l`: digits have look-alikes).
//! Kept as strings, the keys cost a fleet of 100,000 devices two or three
//! allocations each, more than a quarter of what an idle UDP device
//! holds. So the index keeps no key: each entry is the key's hash and its
//! client, and a key is checked, when its hash matches, against the
//! client's name under the directory's lock (which every rename holds
//! while it changes a name and its entries together).
//!
//! [`Name::key`]: super::Name::key
//! [`Name::shape_key`]: super::Name::shape_key

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;

#[cfg(test)]
use super::Session;
use super::{comparison_key, shape_key, ClientId, Member, Name, NameKeys};
use crate::sync::lock;

/// The local clients, by their names' keys. Lives in the hub's directory,
/// under its lock.
#[derive(Debug, Default)]
pub(super) struct NameIndex<S = RandomState> {
    /// Every client, under its name's [`NameKeys::key`].
    by_key: HashTable<Entry>,
    /// The clients whose name's [`NameKeys::shape`] is not its key (most
    /// names have one form for both), under that shape.
    by_shape: HashTable<Entry>,
    /// Keyed at random: names are what clients choose, so their hashes
    /// must not be theirs to collide.
    hasher: S,
}

/// A client under one of its keys: 16 bytes, where a key as a string and
/// the client were 24 and the key's own allocation.
#[derive(Debug)]
struct Entry {
    hash: u64,
    member: Arc<Member>,
}

/// Which of a name's two keys.
#[derive(Debug, Clone, Copy)]
enum Form {
    Key,
    Shape,
}

impl Form {
    /// This key of `member`'s name now.
    fn of(self, member: &Member) -> String {
        let name = lock(&member.name);
        match self {
            Form::Key => comparison_key(name.as_str()),
            Form::Shape => shape_key(name.as_str()),
        }
    }
}

impl<S: BuildHasher> NameIndex<S> {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn table(&mut self, form: Form) -> &mut HashTable<Entry> {
        match form {
            Form::Key => &mut self.by_key,
            Form::Shape => &mut self.by_shape,
        }
    }

    /// The client whose name's `form` is `key`; one whose name is
    /// `exactly` that is known without computing its key again (0.5 to 2
    /// µs).
    fn find(&self, form: Form, key: &str, exactly: Option<&Name>) -> Option<&Arc<Member>> {
        let hash = self.hash(key);
        let table = match form {
            Form::Key => &self.by_key,
            Form::Shape => &self.by_shape,
        };
        table
            .find(hash, |entry| {
                if entry.hash != hash {
                    return false;
                }
                let same = exactly.is_some_and(|name| *lock(&entry.member.name) == *name);
                same || form.of(&entry.member) == key
            })
            .map(|entry| &entry.member)
    }

    /// The client whose name has the comparison key `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Arc<Member>> {
        self.find(Form::Key, key, None)
    }

    /// The client to whom a message for `name` goes: the holder of its
    /// comparison key `key`, found at once if it holds exactly `name`, as
    /// most messages address it.
    pub(super) fn get_named(&self, name: &Name, key: &str) -> Option<&Arc<Member>> {
        self.find(Form::Key, key, Some(name))
    }

    /// The client whose name's shape is `key`, where that differs from
    /// its comparison key.
    pub(super) fn get_shape(&self, key: &str) -> Option<&Arc<Member>> {
        self.find(Form::Shape, key, None)
    }

    /// Records that `member` holds the name of `keys` (its name is that
    /// name from now on, before the directory's lock is let go).
    pub(super) fn insert(&mut self, keys: &NameKeys, member: &Arc<Member>) {
        self.insert_into(Form::Key, &keys.key, member);
        if keys.shape != keys.key {
            self.insert_into(Form::Shape, &keys.shape, member);
        }
    }

    fn insert_into(&mut self, form: Form, key: &str, member: &Arc<Member>) {
        let hash = self.hash(key);
        let entry = Entry {
            hash,
            member: member.clone(),
        };
        self.table(form)
            .insert_unique(hash, entry, |entry| entry.hash);
    }

    /// Forgets that `me` holds the name of `keys`; returns whether it held
    /// it (under its comparison key).
    pub(super) fn remove(&mut self, keys: &NameKeys, me: ClientId) -> bool {
        let held = self.remove_from(Form::Key, &keys.key, me);
        self.remove_from(Form::Shape, &keys.shape, me);
        held
    }

    fn remove_from(&mut self, form: Form, key: &str, me: ClientId) -> bool {
        let hash = self.hash(key);
        let held = |entry: &Entry| {
            entry.hash == hash && entry.member.id == me && form.of(&entry.member) == key
        };
        match self.table(form).find_entry(hash, held) {
            Ok(found) => {
                found.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// How many clients there are.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Every client, in no order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Member>> {
        self.by_key.iter().map(|entry| &entry.member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::tests::{connect, hub};

    /// Hashes every key alike: each lookup finds every entry's hash
    /// matching, and only the names can tell the clients apart.
    #[derive(Debug, Default)]
    struct AllCollide;

    impl BuildHasher for AllCollide {
        type Hasher = Constant;
        fn build_hasher(&self) -> Constant {
            Constant
        }
    }

    struct Constant;

    impl std::hash::Hasher for Constant {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    /// The index keeps hashes, not keys: two clients whose keys hash
    /// alike are still told apart by their names, a look-alike finds the
    /// name it looks like, and a released name is found no more.
    #[test]
    fn clients_whose_keys_hash_alike_are_told_apart_by_their_names() {
        let hub = hub();
        let (a, b) = (connect(&hub, None), connect(&hub, None));
        let mut index = NameIndex::<AllCollide>::default();
        let keys = |name: &Session| NameKeys::of(name.name());
        index.insert(&keys(&a), &a.me);
        index.insert(&keys(&b), &b.me);
        assert_eq!(index.len(), 2);
        for client in [&a, &b] {
            let found = index.get(&keys(client).key).map(|m| m.id);
            assert_eq!(found, Some(client.id()), "{}", client.name());
        }
        // `guest-1` is `guest-l` as a key: written with a letter, it is
        // found as the look-alike it is.
        let lookalike = Name::new(&a.name().as_str().replace('1', "l")).unwrap();
        let found = index.get(&NameKeys::of(&lookalike).key).map(|m| m.id);
        assert_eq!(found, Some(a.id()));
        assert!(index
            .get(&NameKeys::of(&Name::new("nobody").unwrap()).key)
            .is_none());
        // Only its holder releases a name.
        assert!(!index.remove(&keys(&a), b.id()));
        assert!(index.remove(&keys(&a), a.id()));
        assert!(index.get(&keys(&a).key).is_none());
        assert_eq!(index.get(&keys(&b).key).map(|m| m.id), Some(b.id()));
        assert_eq!(index.len(), 1);
    }

    /// A name whose shape differs from its key is found under the shape
    /// too, and released from both.
    #[test]
    fn a_name_is_found_under_its_shape_where_that_differs() {
        let hub = hub();
        let mut a = connect(&hub, None);
        // A capital I: its shape is `alice`'s, its key is not.
        hub_rename(&mut a, "AIice");
        let keys = NameKeys::of(a.name());
        assert_ne!(keys.key, keys.shape);
        let mut index = NameIndex::<AllCollide>::default();
        index.insert(&keys, &a.me);
        assert_eq!(index.get_shape(&keys.shape).map(|m| m.id), Some(a.id()));
        assert!(index.get_shape(&keys.key).is_none());
        index.remove(&keys, a.id());
        assert!(index.get_shape(&keys.shape).is_none());
    }

    fn hub_rename(session: &mut Session, name: &str) {
        let name = Name::new(name).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(session.rename(name))
            .unwrap();
    }
}
