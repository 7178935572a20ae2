//! The open calls of one peer process's serving connection: which call id
//! goes to which waiting handler. Sans-IO: a table with a bound, no
//! channels or clocks (the route `R` is whatever the driver delivers to).
//!
//! Ids are allocated in order (wrapping, skipping ids still open); a frame
//! for an id that is not open (the call ended, was cancelled, or never
//! existed) routes nowhere and is dropped by the driver. Once closed (the
//! connection ended) the table opens nothing and hands back every route,
//! so their handlers end the calls with `unavailable`.

use std::collections::HashMap;

/// Why a call could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The connection ended.
    Closed,
    /// As many calls as allowed are open.
    Full,
}

/// See the module docs.
#[derive(Debug)]
pub struct RemoteCalls<R> {
    open: HashMap<u32, R>,
    next: u32,
    max: usize,
    closed: bool,
}

impl<R> RemoteCalls<R> {
    /// A table holding at most `max` open calls.
    pub fn new(max: usize) -> Self {
        Self {
            open: HashMap::new(),
            next: 1,
            max,
            closed: false,
        }
    }

    /// Opens a call delivering to `route`; its id.
    pub fn open(&mut self, route: R) -> Result<u32, OpenError> {
        if self.closed {
            return Err(OpenError::Closed);
        }
        if self.open.len() >= self.max {
            return Err(OpenError::Full);
        }
        // At most `max` ids are taken, so a free one is found quickly.
        let mut id = self.next;
        while self.open.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next = id.wrapping_add(1);
        self.open.insert(id, route);
        Ok(id)
    }

    /// Where frames of call `id` go, if it is open.
    pub fn route(&self, id: u32) -> Option<&R> {
        self.open.get(&id)
    }

    /// Ends call `id`; whether it was open.
    pub fn finish(&mut self, id: u32) -> bool {
        self.open.remove(&id).is_some()
    }

    /// Calls open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no call is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The connection ended: opens nothing more; every open call's route.
    pub fn close(&mut self) -> Vec<R> {
        self.closed = true;
        self.open.drain().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_bounded_and_routed() {
        let mut t = RemoteCalls::new(2);
        let a = t.open("a").unwrap();
        let b = t.open("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(t.open("c"), Err(OpenError::Full));
        assert_eq!(t.route(a), Some(&"a"));
        assert!(t.finish(a));
        assert!(!t.finish(a));
        assert_eq!(t.route(a), None);
        let c = t.open("c").unwrap();
        assert!(c != b && c != a);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn ids_wrap_around_open_ones() {
        let mut t = RemoteCalls::new(4);
        t.next = u32::MAX;
        let a = t.open(1).unwrap();
        let b = t.open(2).unwrap();
        assert_eq!((a, b), (u32::MAX, 0));
        t.next = u32::MAX;
        assert_eq!(t.open(3).unwrap(), 1);
    }

    #[test]
    fn closing_hands_back_routes_and_refuses_more() {
        let mut t = RemoteCalls::new(4);
        t.open("a").unwrap();
        t.open("b").unwrap();
        let mut routes = t.close();
        routes.sort_unstable();
        assert_eq!(routes, ["a", "b"]);
        assert!(t.is_empty());
        assert_eq!(t.open("c"), Err(OpenError::Closed));
    }
}
