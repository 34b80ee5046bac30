//! Slows down a peer that keeps presenting wrong tokens: after a few failures it is answered 429
//! for a while that doubles with each further failure, before any token is compared.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures a peer may make before it is slowed down.
const FREE_FAILURES: u32 = 5;
/// The longest a peer is turned away.
const LONGEST_BLOCK: Duration = Duration::from_secs(60);
/// Peers remembered at most; the oldest are forgotten first when a flood of addresses fills it.
const REMEMBERED_PEERS: usize = 10_000;

#[derive(Debug, Default)]
pub struct FailureGate {
    peers: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl FailureGate {
    /// `Err(wait)` while `peer` is turned away.
    pub fn check(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match peers.get(&peer).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a refused token from `peer`.
    pub fn failed(&self, peer: IpAddr, now: Instant) {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if peers.len() >= REMEMBERED_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, f| now.saturating_duration_since(f.last) < LONGEST_BLOCK);
            if peers.len() >= REMEMBERED_PEERS
                && let Some(oldest) = peers.iter().min_by_key(|(_, f)| f.last).map(|(p, _)| *p)
            {
                peers.remove(&oldest);
            }
        }
        let failures = peers.entry(peer).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        if let Some(over) = failures.count.checked_sub(FREE_FAILURES) {
            let block = Duration::from_secs(1u64 << over.min(6)).min(LONGEST_BLOCK);
            failures.blocked_until = Some(now + block);
        }
    }

    /// A peer that presented a good token starts afresh.
    pub fn succeeded(&self, peer: IpAddr) {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_slowed_after_a_few_failures_and_freed_by_a_good_token() {
        let gate = FailureGate::default();
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            gate.failed(peer, now);
        }
        assert_eq!(gate.check(peer, now), Ok(()));
        gate.failed(peer, now);
        assert_eq!(gate.check(peer, now), Err(Duration::from_secs(1)));
        gate.failed(peer, now);
        assert_eq!(gate.check(peer, now), Err(Duration::from_secs(2)));
        for _ in 0..20 {
            gate.failed(peer, now);
        }
        assert_eq!(gate.check(peer, now), Err(LONGEST_BLOCK));
        assert_eq!(gate.check(peer, now + LONGEST_BLOCK), Ok(()));
        assert_eq!(gate.check(other, now), Ok(()), "only that peer");
        gate.succeeded(peer);
        assert_eq!(gate.check(peer, now), Ok(()));
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let gate = FailureGate::default();
        let now = Instant::now();
        for n in 0..(REMEMBERED_PEERS as u32 + 50) {
            gate.failed(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(gate.peers.lock().unwrap().len() <= REMEMBERED_PEERS);
    }
}
