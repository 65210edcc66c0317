//! Sets of IP addresses as sorted, disjoint, non-adjacent inclusive ranges, one
//! list per family. Tag expansion (`Internet` = public space minus the VNet's
//! set) needs set difference, which prefix lists cannot express directly.

use std::net::IpAddr;

use ipnet::IpNet;

/// An inclusive range `lo..=hi` of addresses of one family.
pub type AddressRange<T> = (T, T);

/// A set of IPv4 and IPv6 addresses. Invariant: each list is sorted, its
/// ranges are disjoint and no two are adjacent (so equal sets compare equal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressSet {
    pub v4: Vec<AddressRange<u32>>,
    pub v6: Vec<AddressRange<u128>>,
}

impl AddressSet {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every IPv4 and IPv6 address (`*`).
    pub fn everything() -> Self {
        AddressSet {
            v4: vec![(0, u32::MAX)],
            v6: vec![(0, u128::MAX)],
        }
    }

    pub fn from_prefixes<'a>(prefixes: impl IntoIterator<Item = &'a IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for prefix in prefixes {
            match prefix {
                IpNet::V4(net) => v4.push((u32::from(net.network()), u32::from(net.broadcast()))),
                IpNet::V6(net) => v6.push((u128::from(net.network()), u128::from(net.broadcast()))),
            }
        }
        AddressSet {
            v4: normalize(v4),
            v6: normalize(v6),
        }
    }

    pub fn from_addresses<'a>(addresses: impl IntoIterator<Item = &'a IpAddr>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for address in addresses {
            match address {
                IpAddr::V4(a) => v4.push((u32::from(*a), u32::from(*a))),
                IpAddr::V6(a) => v6.push((u128::from(*a), u128::from(*a))),
            }
        }
        AddressSet {
            v4: normalize(v4),
            v6: normalize(v6),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => contains(&self.v6, u128::from(a)),
        }
    }

    pub fn union(&self, other: &AddressSet) -> AddressSet {
        AddressSet {
            v4: normalize(self.v4.iter().chain(&other.v4).copied().collect()),
            v6: normalize(self.v6.iter().chain(&other.v6).copied().collect()),
        }
    }

    pub fn difference(&self, other: &AddressSet) -> AddressSet {
        AddressSet {
            v4: difference(&self.v4, &other.v4),
            v6: difference(&self.v6, &other.v6),
        }
    }

    pub fn intersection(&self, other: &AddressSet) -> AddressSet {
        self.difference(&self.difference(other))
    }

    /// Whether every address of `other` is in `self`.
    pub fn is_superset(&self, other: &AddressSet) -> bool {
        other.difference(self).is_empty()
    }

    /// The set written as the fewest CIDR prefixes, IPv4 first: how effective
    /// rules show expanded tags.
    pub fn to_prefixes(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for &(lo, hi) in &self.v4 {
            for (base, len) in range_to_prefixes(u128::from(lo), u128::from(hi), 32) {
                let net = ipnet::Ipv4Net::new((base as u32).into(), len as u8)
                    .expect("prefix length within 0..=32");
                out.push(IpNet::V4(net));
            }
        }
        for &(lo, hi) in &self.v6 {
            for (base, len) in range_to_prefixes(lo, hi, 128) {
                let net = ipnet::Ipv6Net::new(base.into(), len as u8)
                    .expect("prefix length within 0..=128");
                out.push(IpNet::V6(net));
            }
        }
        out
    }
}

fn contains<T: Ord + Copy>(ranges: &[(T, T)], value: T) -> bool {
    let index = ranges.partition_point(|&(lo, _)| lo <= value);
    index > 0 && value <= ranges[index - 1].1
}

/// Bounds arithmetic shared by both families.
trait Bound: Copy + Ord {
    const MAX: Self;
    fn succ(self) -> Self;
    fn pred(self) -> Self;
}

impl Bound for u32 {
    const MAX: Self = u32::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
}

impl Bound for u128 {
    const MAX: Self = u128::MAX;
    fn succ(self) -> Self {
        self + 1
    }
    fn pred(self) -> Self {
        self - 1
    }
}

fn normalize<T: Bound>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        if let Some(last) = out.last_mut() {
            if last.1 == T::MAX || lo <= last.1.succ() {
                last.1 = last.1.max(hi);
                continue;
            }
        }
        out.push((lo, hi));
    }
    out
}

fn difference<T: Bound>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(lo, hi) in a {
        let mut start = lo;
        let mut alive = true;
        while j < b.len() && b[j].1 < start {
            j += 1;
        }
        let mut k = j;
        while alive && k < b.len() && b[k].0 <= hi {
            let (cut_lo, cut_hi) = b[k];
            if cut_lo > start {
                out.push((start, cut_lo.pred()));
            }
            if cut_hi >= hi {
                alive = false;
            } else {
                start = cut_hi.succ();
            }
            k += 1;
        }
        if alive {
            out.push((start, hi));
        }
    }
    out
}

/// Splits `lo..=hi` (values of a `bits`-wide space) into aligned prefixes,
/// returned as (first address, prefix length).
fn range_to_prefixes(lo: u128, hi: u128, bits: u32) -> Vec<(u128, u32)> {
    // Last address of the 2^size_log block starting at an aligned `start`.
    let block_last = |start: u128, size_log: u32| {
        if size_log >= 128 {
            u128::MAX
        } else {
            start + ((1u128 << size_log) - 1)
        }
    };
    let mut out = Vec::new();
    let mut start = lo;
    loop {
        let mut size_log = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        while size_log > 0 && block_last(start, size_log) > hi {
            size_log -= 1;
        }
        out.push((start, bits - size_log));
        let last = block_last(start, size_log);
        if last >= hi {
            return out;
        }
        start = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(prefixes: &[&str]) -> AddressSet {
        let nets: Vec<IpNet> = prefixes.iter().map(|p| p.parse().unwrap()).collect();
        AddressSet::from_prefixes(&nets)
    }

    #[test]
    fn difference_and_prefixes_round_trip() {
        let all = set(&["10.0.0.0/8"]);
        let hole = set(&["10.1.0.0/16", "10.3.4.0/24"]);
        let rest = all.difference(&hole);
        assert!(!rest.contains("10.1.2.3".parse().unwrap()));
        assert!(rest.contains("10.2.0.0".parse().unwrap()));
        assert!(!rest.contains("10.3.4.255".parse().unwrap()));
        assert!(rest.contains("10.3.5.0".parse().unwrap()));
        let back = AddressSet::from_prefixes(&rest.to_prefixes());
        assert_eq!(back, rest);
        assert_eq!(rest.union(&hole), all);
    }

    #[test]
    fn whole_spaces_become_single_prefixes() {
        let everything = AddressSet::everything();
        let prefixes: Vec<String> = everything
            .to_prefixes()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(prefixes, vec!["0.0.0.0/0", "::/0"]);
        assert!(everything.is_superset(&set(&["2001:db8::/32", "1.2.3.4/32"])));
        assert!(AddressSet::empty().to_prefixes().is_empty());
    }

    #[test]
    fn adjacent_ranges_merge() {
        let merged = set(&["10.0.0.0/25", "10.0.0.128/25"]);
        assert_eq!(merged, set(&["10.0.0.0/24"]));
        assert_eq!(merged.to_prefixes()[0].to_string(), "10.0.0.0/24");
    }
}
