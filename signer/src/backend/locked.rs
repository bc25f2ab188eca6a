//! Keeps secrets out of swap: `mlock` on the pages holding a secret, where
//! the process is permitted to (`RLIMIT_MEMLOCK`, or `CAP_IPC_LOCK`).
//!
//! Locks are page-granular and the kernel does not count them: unlocking one
//! key's page would unlock its neighbours' too. So locks are counted here,
//! per page, and a page is unlocked only when its last secret is dropped.
//! When locking is not permitted the secret is still used (and still
//! zeroized on drop); a warning says so once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Counted locks by page address.
fn pages() -> &'static Mutex<HashMap<usize, (usize, region::LockGuard)>> {
    static PAGES: OnceLock<Mutex<HashMap<usize, (usize, region::LockGuard)>>> = OnceLock::new();
    PAGES.get_or_init(|| Mutex::new(HashMap::new()))
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// A held lock on the pages of one secret; dropping it releases them.
#[derive(Debug)]
pub struct Lock {
    pages: Vec<usize>,
}

/// Locks the pages holding `value` (which must not move while the lock is
/// held: put it in a `Box`). `None` when locking is not permitted.
pub fn lock<T>(value: &T) -> Option<Lock> {
    let size = std::mem::size_of::<T>().max(1);
    let start = std::ptr::from_ref(value) as usize;
    let page = region::page::size();
    let first = start / page * page;
    let last = (start + size - 1) / page * page;
    let mut held = Vec::new();
    let mut map = pages().lock().ok()?;
    for p in (first..=last).step_by(page) {
        if let Some((count, _)) = map.get_mut(&p) {
            *count += 1;
            held.push(p);
            continue;
        }
        match region::lock(p as *const u8, page) {
            Ok(guard) => {
                map.insert(p, (1, guard));
                held.push(p);
            }
            Err(e) => {
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "cannot mlock secret key memory (raise LimitMEMLOCK or grant CAP_IPC_LOCK); keys stay in swappable memory");
                }
                release(&mut map, &held);
                return None;
            }
        }
    }
    Some(Lock { pages: held })
}

fn release(map: &mut HashMap<usize, (usize, region::LockGuard)>, held: &[usize]) {
    for p in held {
        if let Some((count, _)) = map.get_mut(p) {
            *count -= 1;
            if *count == 0 {
                map.remove(p);
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Ok(mut map) = pages().lock() {
            release(&mut map, &self.pages);
        }
    }
}

/// Number of pages currently locked (for tests and metrics).
pub fn locked_pages() -> usize {
    pages().lock().map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_counted_per_page() {
        let a = Box::new([1u8; 32]);
        let b = Box::new([2u8; 32]);
        let before = locked_pages();
        let (Some(la), Some(lb)) = (lock(&*a), lock(&*b)) else {
            // Root in CI; an unprivileged run with RLIMIT_MEMLOCK 0 cannot test this.
            assert!(
                memlock_limit_is_zero(),
                "mlock failed although the memlock limit allows it"
            );
            return;
        };
        let after = locked_pages();
        assert!(after > before && after <= before + 2, "{before} → {after}");
        drop(la);
        // b's page (possibly shared with a) is still locked.
        assert!(locked_pages() > before);
        drop(lb);
        assert_eq!(locked_pages(), before);
    }

    fn memlock_limit_is_zero() -> bool {
        std::fs::read_to_string("/proc/self/limits").is_ok_and(|l| {
            l.lines()
                .any(|line| line.starts_with("Max locked memory") && line.contains(" 0 "))
        })
    }
}
