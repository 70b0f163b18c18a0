//! One client's share of something scarce (a bcrypt check, a request
//! slot): at most so many held by one client address at a time, so a single
//! source cannot take it all. A client is an IPv4 address or an IPv6 /64.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// At most `limit` of something held by one client address at a time.
pub struct PerClientLimit {
    limit: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClientLimit {
    pub fn new(limit: usize) -> PerClientLimit {
        PerClientLimit {
            limit: limit.max(1),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A share for the client at `address`, unless it holds `limit` already.
    pub fn take(&self, address: IpAddr) -> Option<ClientShare> {
        let client = client_of(address);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientShare {
            client,
            held: Arc::clone(&self.held),
        })
    }
}

/// One client's share of a [`PerClientLimit`], given back when dropped.
pub struct ClientShare {
    client: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// One client, as far as an address tells: an IPv4 address, or an IPv6
/// /64 (one host usually holds a whole /64).
pub fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holds_at_most_its_limit() {
        let limit = PerClientLimit::new(2);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = (limit.take(here).unwrap(), limit.take(here).unwrap());
        assert!(limit.take(here).is_none());
        assert!(limit.take("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        let c = limit.take(here).unwrap();
        drop((b, c));
        assert!(limit.held.lock().unwrap().is_empty(), "nothing left behind");
    }

    #[test]
    fn one_client_is_an_ipv4_address_or_an_ipv6_64() {
        let v6 = |text: &str| client_of(text.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:192.0.2.1"), v6("192.0.2.1"));
        assert_ne!(v6("192.0.2.1"), v6("192.0.2.2"));
    }
}
