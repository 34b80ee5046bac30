//! IPv4 CIDR arithmetic for route, security-group and network-ACL rules.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, prefix.parse::<u8>().ok()?),
            None => (text, 32),
        };
        if prefix > 32 {
            return None;
        }
        let address: Ipv4Addr = address.parse().ok()?;
        Some(Cidr {
            base: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    pub fn contains_ip(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base
    }

    /// Whether every address of `inner` is inside `self`.
    pub fn contains(&self, inner: &Cidr) -> bool {
        inner.prefix >= self.prefix && inner.base & mask(self.prefix) == self.base
    }

    /// An address inside the block, away from the reserved first addresses.
    pub fn sample(&self) -> Ipv4Addr {
        let offset = if self.prefix >= 31 {
            0
        } else {
            10.min((1u32 << (32 - self.prefix)) - 2)
        };
        Ipv4Addr::from(self.base + offset)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// Whether the CIDR text contains the address; unparseable text contains nothing.
pub fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    Cidr::parse(cidr).is_some_and(|c| c.contains_ip(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_what_they_should() {
        let vpc = Cidr::parse("10.42.0.0/16").unwrap();
        assert!(vpc.contains(&Cidr::parse("10.42.192.0/19").unwrap()));
        assert!(!vpc.contains(&Cidr::parse("10.0.0.0/8").unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains_ip("52.1.2.3".parse().unwrap())
        );
        assert!(cidr_contains(
            "52.10.10.10/32",
            "52.10.10.10".parse().unwrap()
        ));
        assert!(cidr_contains("52.10.10.10", "52.10.10.10".parse().unwrap()));
        assert!(!cidr_contains(
            "52.10.10.0/24",
            "52.10.11.1".parse().unwrap()
        ));
        assert!(!cidr_contains("not a cidr", "10.0.0.1".parse().unwrap()));
        assert_eq!(
            Cidr::parse("10.42.96.0/19").unwrap().sample(),
            "10.42.96.10".parse::<Ipv4Addr>().unwrap()
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }
}
