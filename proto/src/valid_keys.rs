//! A per-thread memory of the ed25519 public keys found valid most
//! recently, so that [`crate::NodeId::from_bytes`] decompresses a curve
//! point (tens of µs) once per key, not once per decode.
//!
//! A ledger body names the same few peers entry after entry, and a stream
//! of channel deliveries the same few publishers; each used to pay the
//! check every time. Validity is a pure function of the 32 bytes, so a
//! remembered key needs no second check. Only keys that passed are
//! remembered; a stream of distinct keys just misses (a scan of a few
//! slots) and pays the check as before, and the memory stays fixed.

use std::cell::RefCell;

/// Keys each thread remembers.
const SLOTS: usize = 16;

thread_local! {
    static VALID: RefCell<([[u8; 32]; SLOTS], [bool; SLOTS], usize)> =
        const { RefCell::new(([[0; 32]; SLOTS], [false; SLOTS], 0)) };
}

/// Whether `bytes` is a valid ed25519 public key: remembered, or checked
/// by `check` and then remembered if it passed.
pub(crate) fn is_valid(bytes: &[u8; 32], check: impl FnOnce(&[u8; 32]) -> bool) -> bool {
    let known = VALID.with(|c| {
        let (keys, used, _) = &*c.borrow();
        keys.iter().zip(used).any(|(k, u)| *u && k == bytes)
    });
    if known {
        return true;
    }
    if !check(bytes) {
        return false;
    }
    VALID.with(|c| {
        let (keys, used, next) = &mut *c.borrow_mut();
        let slot = *next % SLOTS;
        keys[slot] = *bytes;
        used[slot] = true;
        *next = (slot + 1) % SLOTS;
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A check that answers `verdict` and counts its calls in `checks`.
    fn counting(checks: &Cell<usize>, verdict: bool) -> impl Fn(&[u8; 32]) -> bool + Copy + '_ {
        move |_| {
            checks.set(checks.get() + 1);
            verdict
        }
    }

    #[test]
    fn a_key_that_passed_is_not_checked_again() {
        let checks = Cell::new(0);
        let check = counting(&checks, true);
        assert!(is_valid(&[1; 32], check));
        assert!(is_valid(&[1; 32], check));
        assert_eq!(checks.get(), 1);
    }

    #[test]
    fn a_key_that_failed_is_checked_every_time_and_never_passes() {
        let checks = Cell::new(0);
        let check = counting(&checks, false);
        assert!(!is_valid(&[2; 32], check));
        assert!(!is_valid(&[2; 32], check));
        assert_eq!(checks.get(), 2);
    }

    #[test]
    fn the_oldest_key_is_forgotten_past_the_slots() {
        let checks = Cell::new(0);
        let check = counting(&checks, true);
        for i in 0..=SLOTS as u8 {
            assert!(is_valid(&[100 + i; 32], check));
        }
        assert_eq!(checks.get(), SLOTS + 1);
        assert!(is_valid(&[100; 32], check), "slot 0 was reused");
        assert_eq!(checks.get(), SLOTS + 2);
        assert!(
            is_valid(&[100 + SLOTS as u8; 32], check),
            "the newest stays"
        );
        assert_eq!(checks.get(), SLOTS + 2);
    }
}
