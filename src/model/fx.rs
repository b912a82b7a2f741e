//! The hash tables built per load and per plan, on `rustc-hash`'s `FxHasher`.
//!
//! A fast, non-keyed hash (the one rustc uses): the keys of these tables come from the operator's
//! own manifests, ledger and Atlas account, so SipHash's defence against crafted collisions buys
//! nothing, and SipHash was the largest cost of the clash checks. Tables keyed by what a server
//! sends (a listing's ids) keep a keyed hash.

pub(crate) type FxMap<K, V> = rustc_hash::FxHashMap<K, V>;
pub(crate) type FxSet<K> = rustc_hash::FxHashSet<K>;
