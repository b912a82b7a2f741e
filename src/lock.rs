//! The one mutex-poisoning policy: recover the guard and do the work anyway.
//!
//! Every `std::sync::Mutex` of ours guards plain state (instants, counters, sets of ids, caches) that
//! each critical section leaves consistent before anything in it can panic. A poisoned lock therefore
//! only says that some other thread panicked; its data is still right, and skipping the work it guards
//! (a 429 pause, a one-to-one adoption claim) would be the real bug.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `lock()` under the policy above.
pub(crate) trait LockExt<T: ?Sized> {
    /// The guard, poisoned or not.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock_or_recover();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock_or_recover() += 1;
        assert_eq!(*m.lock_or_recover(), 2);
    }
}
