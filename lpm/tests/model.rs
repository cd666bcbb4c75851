//! The tables against a naive longest-prefix search over random route sets, adds and
//! deletes (proptest), and a reader looking up while the writer changes other routes.

use pmd_lpm::{Lpm4, Lpm6, LpmConfig, LpmError};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The routes as a map, looked up the slow way.
#[derive(Default)]
struct Model {
    bits: u32,
    rules: HashMap<(u8, u128), u32>,
}

fn mask(key: u128, depth: u8, bits: u32) -> u128 {
    let full = if bits == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    if depth == 0 {
        0
    } else {
        key & (full << (bits - u32::from(depth))) & full
    }
}

impl Model {
    fn lookup(&self, key: u128) -> Option<u32> {
        (0..=self.bits as u8)
            .rev()
            .find_map(|d| self.rules.get(&(d, mask(key, d, self.bits))).copied())
    }

    /// Addresses that sit on the edges of the routes, and the given random ones.
    fn probes(&self, random: &[u128]) -> Vec<u128> {
        let full = if self.bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        let mut v = random.to_vec();
        for &(d, p) in self.rules.keys() {
            // The addresses under the prefix: all bits past the depth set.
            let span = full
                .checked_shr(u32::from(d) + 128 - self.bits)
                .unwrap_or(0);
            let last = p | span;
            v.extend([
                p,
                last,
                p.wrapping_sub(1) & full,
                last.wrapping_add(1) & full,
            ]);
        }
        v
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(u128, u8, u32),
    Delete(usize),
}

/// Route prefixes clustered so that routes nest and share groups.
fn ops(bits: u32) -> impl Strategy<Value = Vec<Op>> {
    let depth = if bits == 32 {
        prop_oneof![0u8..=32, 20u8..=32, 24u8..=32].boxed()
    } else {
        prop_oneof![0u8..=128, 20u8..=64, 40u8..=128].boxed()
    };
    let key = if bits == 32 {
        // A few /16s, so that routes overlap.
        (0u32..4, any::<u16>())
            .prop_map(|(hi, lo)| u128::from(0x0a00_0000 | hi << 16 | u32::from(lo)))
            .boxed()
    } else {
        (0u128..4, any::<u64>(), any::<u64>())
            .prop_map(|(hi, a, b)| {
                0x2001_0db8u128 << 96 | hi << 80 | u128::from(a) << 16 | u128::from(b & 0xffff)
            })
            .boxed()
    };
    prop::collection::vec(
        prop_oneof![
            3 => (key, depth, 0u32..4).prop_map(|(k, d, h)| Op::Add(k, d, h)),
            1 => any::<usize>().prop_map(Op::Delete),
        ],
        1..120,
    )
}

trait Table {
    fn add(&mut self, key: u128, depth: u8, nh: u32) -> Result<(), LpmError>;
    fn delete(&mut self, key: u128, depth: u8) -> Result<(), LpmError>;
    fn get(&self, key: u128) -> Option<u32>;
    fn groups(&self) -> usize;
}

impl Table for Lpm4 {
    fn add(&mut self, key: u128, depth: u8, nh: u32) -> Result<(), LpmError> {
        Lpm4::add(self, Ipv4Addr::from(key as u32), depth, nh)
    }
    fn delete(&mut self, key: u128, depth: u8) -> Result<(), LpmError> {
        Lpm4::delete(self, Ipv4Addr::from(key as u32), depth)
    }
    fn get(&self, key: u128) -> Option<u32> {
        self.lookup(key as u32)
    }
    fn groups(&self) -> usize {
        self.groups_in_use()
    }
}

impl Table for Lpm6 {
    fn add(&mut self, key: u128, depth: u8, nh: u32) -> Result<(), LpmError> {
        Lpm6::add(self, Ipv6Addr::from(key), depth, nh)
    }
    fn delete(&mut self, key: u128, depth: u8) -> Result<(), LpmError> {
        Lpm6::delete(self, Ipv6Addr::from(key), depth)
    }
    fn get(&self, key: u128) -> Option<u32> {
        self.lookup(Ipv6Addr::from(key))
    }
    fn groups(&self) -> usize {
        self.groups_in_use()
    }
}

fn check<T: Table>(t: &mut T, bits: u32, ops: &[Op], random: &[u128]) -> Result<(), TestCaseError> {
    let mut m = Model {
        bits,
        ..Model::default()
    };
    for op in ops {
        match *op {
            Op::Add(k, d, h) => {
                t.add(k, d, h)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.rules.insert((d, mask(k, d, bits)), h);
            }
            Op::Delete(i) => {
                let Some(&(d, p)) = m.rules.keys().nth(i % m.rules.len().max(1)) else {
                    continue;
                };
                t.delete(p, d)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                m.rules.remove(&(d, p));
            }
        }
    }
    for k in m.probes(random) {
        prop_assert_eq!(t.get(k), m.lookup(k), "address {:#x}", k);
    }
    // Deleting every route empties the table and gives back every group.
    let all: Vec<(u8, u128)> = m.rules.keys().copied().collect();
    for (d, p) in all {
        t.delete(p, d)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    prop_assert_eq!(t.groups(), 0);
    for k in random {
        prop_assert_eq!(t.get(*k), None);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ipv4_matches_a_naive_longest_prefix_search(
        ops in ops(32),
        random in prop::collection::vec(0x0a00_0000u128..0x0a05_0000, 64),
    ) {
        let mut t = Lpm4::new(&LpmConfig { max_rules: 1000, tbl8_groups: 512, ..LpmConfig::default() }).unwrap();
        check(&mut t, 32, &ops, &random)?;
    }

    #[test]
    fn ipv6_matches_a_naive_longest_prefix_search(
        ops in ops(128),
        random in prop::collection::vec(any::<u128>(), 64),
    ) {
        let mut t = Lpm6::new(&LpmConfig { max_rules: 1000, tbl8_groups: 8192, ..LpmConfig::default() }).unwrap();
        check(&mut t, 128, &ops, &random)?;
    }
}

#[test]
fn wrong_input_is_refused_and_changes_nothing() {
    let mut t = Lpm4::new(&LpmConfig {
        max_rules: 2,
        tbl8_groups: 1,
        ..LpmConfig::default()
    })
    .unwrap();
    let a = Ipv4Addr::new(10, 0, 0, 0);
    assert_eq!(t.add(a, 33, 1), Err(LpmError::Depth { depth: 33, max: 32 }));
    assert_eq!(t.add(a, 8, 1 << 22), Err(LpmError::NextHop(1 << 22)));
    t.add(a, 8, 1).unwrap();
    t.add(Ipv4Addr::new(10, 0, 0, 128), 25, 2).unwrap();
    assert_eq!(
        t.add(Ipv4Addr::new(11, 0, 0, 0), 8, 3),
        Err(LpmError::Full(2))
    );
    // Replacing a route's next hop is not a new route.
    t.add(a, 8, 4).unwrap();
    assert_eq!(t.lookup(0x0a00_0001), Some(4));
    assert_eq!(t.lookup(0x0a00_0081), Some(2));
    assert!(matches!(
        t.delete(Ipv4Addr::new(12, 0, 0, 0), 8),
        Err(LpmError::NotFound(s)) if s == "12.0.0.0/8"
    ));
    // Out of groups: the /25 above took the only one.
    let mut t = Lpm4::new(&LpmConfig {
        max_rules: 10,
        tbl8_groups: 1,
        reclaim_wait: std::time::Duration::ZERO,
    })
    .unwrap();
    t.add(Ipv4Addr::new(10, 0, 0, 0), 25, 1).unwrap();
    assert!(matches!(
        t.add(Ipv4Addr::new(10, 0, 1, 0), 25, 2),
        Err(LpmError::NoGroup {
            total: 1,
            waiting: 0
        })
    ));
    assert_eq!(t.len(), 1);
    assert_eq!(t.lookup(0x0a00_0101), None);
}

#[test]
fn an_add_that_runs_out_of_groups_gives_back_those_it_took() {
    // A /128 needs 13 groups; with 5 the add fails part way down.
    let mut t = Lpm6::new(&LpmConfig {
        max_rules: 10,
        tbl8_groups: 5,
        reclaim_wait: std::time::Duration::ZERO,
    })
    .unwrap();
    let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert!(matches!(t.add(a, 128, 1), Err(LpmError::NoGroup { .. })));
    assert_eq!(t.groups_in_use(), 0);
    assert_eq!(t.lookup(a), None);
    // And they can be used again.
    t.add(a, 64, 2).unwrap();
    assert_eq!(t.lookup(a), Some(2));
}

#[test]
fn a_freed_group_waits_for_every_reader() {
    let mut t = Lpm4::new(&LpmConfig {
        max_rules: 10,
        tbl8_groups: 1,
        reclaim_wait: std::time::Duration::ZERO,
    })
    .unwrap();
    let r = t.reader();
    t.add(Ipv4Addr::new(10, 0, 0, 0), 25, 1).unwrap();
    t.delete(Ipv4Addr::new(10, 0, 0, 0), 25).unwrap();
    // The reader may still hold the freed group: it cannot be reused yet.
    assert!(matches!(
        t.add(Ipv4Addr::new(10, 0, 1, 0), 25, 2),
        Err(LpmError::NoGroup {
            total: 1,
            waiting: 1
        })
    ));
    r.quiescent();
    t.add(Ipv4Addr::new(10, 0, 1, 0), 25, 2).unwrap();
    assert_eq!(r.lookup(0x0a00_0101), Some(2));
    // A reader that is gone holds nothing back.
    t.delete(Ipv4Addr::new(10, 0, 1, 0), 25).unwrap();
    drop(r);
    t.add(Ipv4Addr::new(10, 0, 2, 0), 25, 3).unwrap();
}

#[test]
fn readers_see_stable_routes_while_the_writer_churns_others() {
    let mut t = Lpm4::new(&LpmConfig {
        max_rules: 1 << 16,
        tbl8_groups: 64,
        ..LpmConfig::default()
    })
    .unwrap();
    t.add(Ipv4Addr::new(10, 0, 0, 0), 8, 7).unwrap();
    t.add(Ipv4Addr::new(10, 1, 1, 0), 24, 8).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let r = t.reader();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let ips: Vec<u32> = (0..64u32).map(|j| 0x0a01_0100 | (j * 4 + i)).collect();
                let mut hops = vec![0u32; 64];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // 10.1.1.x is always /24 -> 8, whatever happens to 10.1.1.0/25..32
                    // routes added and removed under it... except while those exist.
                    r.lookup_bulk(&ips, &mut hops, u32::MAX);
                    for (ip, h) in ips.iter().zip(&hops) {
                        let want_inner = ip & 0xff < 128;
                        assert!(*h == 8 || (want_inner && *h == 9), "{ip:#x} -> {h}");
                    }
                    // 10.2.x.x only ever has the /8.
                    assert_eq!(r.lookup(0x0a02_0304), Some(7));
                    r.quiescent();
                    n += 1;
                }
                n
            })
        })
        .collect();
    for round in 0..2000u32 {
        // A /25 inside the stable /24 (next hop 9), and routes elsewhere in 10/8 that
        // take and free groups.
        t.add(Ipv4Addr::new(10, 1, 1, 0), 25, 9).unwrap();
        let other = Ipv4Addr::from(0x0a03_0000 | (round % 50) << 8);
        t.add(other, 28, round).unwrap();
        t.delete(Ipv4Addr::new(10, 1, 1, 0), 25).unwrap();
        t.delete(other, 28).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 0);
    }
    assert_eq!(t.groups_in_use(), 0);
}

#[test]
fn sibling_routes_with_one_next_hop_stay_apart() {
    // Two /25s with the same next hop fill their /24's group with identical entries;
    // the group must not collapse into the /24 entry (it would lose which half is which).
    let mut t = Lpm4::new(&LpmConfig::default()).unwrap();
    t.add(Ipv4Addr::new(10, 0, 0, 0), 25, 5).unwrap();
    t.add(Ipv4Addr::new(10, 0, 0, 128), 25, 5).unwrap();
    t.delete(Ipv4Addr::new(10, 0, 0, 0), 25).unwrap();
    assert_eq!(t.lookup(0x0a00_0001), None);
    assert_eq!(t.lookup(0x0a00_0081), Some(5));
    let mut t = Lpm6::new(&LpmConfig::default()).unwrap();
    let (lo, hi): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::".parse().unwrap(),
        "2001:db8::8000:0:0:0".parse().unwrap(),
    );
    t.add(lo, 65, 5).unwrap();
    t.add(hi, 65, 5).unwrap();
    t.delete(hi, 65).unwrap();
    assert_eq!(t.lookup("2001:db8::1".parse().unwrap()), Some(5));
    assert_eq!(t.lookup("2001:db8::8000:0:0:1".parse().unwrap()), None);
    assert_eq!(
        t.groups_in_use(),
        6,
        "a /65 takes a group for each byte from the 4th to the 9th"
    );
}
