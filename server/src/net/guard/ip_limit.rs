//! Connections per client IP address, so that one address cannot take every socket the
//! process has (20,000 open files at most on these machines). Checked before the upgrade:
//! over the cap the answer is 429.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

#[derive(Debug)]
pub(crate) struct IpLimiter {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place under its address's cap; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct IpSlot {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl IpLimiter {
    pub(crate) fn new(max: usize) -> Self {
        IpLimiter { max, open: Mutex::default() }
    }

    /// A slot for `ip`, or `None` when it already has `max` connections.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot { limiter: self.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_per_address_and_a_dropped_slot_frees_a_place() {
        let limiter = Arc::new(IpLimiter::new(2));
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let first = limiter.acquire(a).unwrap();
        let _second = limiter.acquire(a).unwrap();
        assert!(limiter.acquire(a).is_none());
        assert!(limiter.acquire(b).is_some());
        drop(first);
        assert!(limiter.acquire(a).is_some());
    }
}
