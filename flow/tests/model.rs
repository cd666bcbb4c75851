//! The flow table against a `HashMap` model under random insert, remove, lookup and
//! expiry sequences (proptest), its refusals, and readers looking up while the writer
//! churns other flows.

use pmd_flow::{FiveTuple4, FiveTuple6, FlowConfig, FlowError, FlowTable, FlowTable4, FlowTable6};
use proptest::prelude::*;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Debug)]
enum Op {
    Insert(u16, u64),
    Remove(u16),
    Lookup(u16),
    Expire(u64),
    Tick,
}

/// A key of the model: a small number spread over the words, so keys collide in buckets
/// and slots are reused.
fn key(n: u16) -> [u64; 2] {
    FiveTuple4 {
        src: [10, 0, (n >> 8) as u8, n as u8].into(),
        dst: [192, 168, 0, 1].into(),
        sport: n.wrapping_mul(7),
        dport: 80,
        proto: 6,
    }
    .key()
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0u16..300, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u16..300).prop_map(Op::Remove),
            3 => (0u16..300).prop_map(Op::Lookup),
            1 => (0u64..20).prop_map(Op::Expire),
            2 => Just(Op::Tick),
        ],
        1..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_table_behaves_as_a_map_with_a_capacity(ops in ops(), capacity in 8u32..128) {
        let mut t = FlowTable4::new(&FlowConfig { capacity, reclaim_wait: Duration::ZERO }).unwrap();
        let r = t.reader();
        let mut m: HashMap<u16, (u64, u64)> = HashMap::new();
        let mut now = 0u64;
        let (mut full, mut buckets) = (0u64, 0u64);
        for op in ops {
            match op {
                Op::Insert(k, v) => match t.insert(&key(k), v, now) {
                    Ok(()) => { m.insert(k, (v, now)); }
                    Err(FlowError::Full(c)) => {
                        prop_assert_eq!(c, capacity);
                        prop_assert!(!m.contains_key(&k));
                        prop_assert_eq!(m.len() as u32, capacity);
                        full += 1;
                    }
                    Err(FlowError::Buckets) => {
                        prop_assert!(!m.contains_key(&k));
                        buckets += 1;
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                },
                Op::Remove(k) => {
                    let got = t.remove(&key(k));
                    prop_assert_eq!(got.is_ok(), m.remove(&k).is_some());
                }
                Op::Lookup(k) => {
                    prop_assert_eq!(r.lookup(&key(k)), m.get(&k).map(|e| e.0));
                    prop_assert_eq!(t.lookup(&key(k)), m.get(&k).map(|e| e.0));
                    if let Some(e) = m.get_mut(&k) {
                        r.lookup_touch(&key(k), now);
                        e.1 = now;
                    }
                }
                Op::Expire(age) => {
                    let mut want: Vec<([u64; 2], u64)> = m
                        .iter()
                        .filter(|(_, e)| now.saturating_sub(e.1) > age)
                        .map(|(&k, e)| (key(k), e.0))
                        .collect();
                    m.retain(|_, e| now.saturating_sub(e.1) <= age);
                    let mut gone = Vec::new();
                    let n = t.expire_with(now, age, |k, v| gone.push((*k, v)));
                    prop_assert_eq!(n, want.len());
                    want.sort_unstable();
                    gone.sort_unstable();
                    prop_assert_eq!(gone, want, "the flows removed, with their values");
                }
                Op::Tick => now += 1,
            }
            r.quiescent();
        }
        let st = t.stats();
        prop_assert_eq!(st.flows as usize, m.len());
        prop_assert_eq!((st.full, st.buckets_full), (full, buckets));
        let mut values = vec![None; 300];
        let keys: Vec<[u64; 2]> = (0..300).map(key).collect();
        r.lookup_bulk(&keys, &mut values);
        for (k, v) in values.iter().enumerate() {
            prop_assert_eq!(*v, m.get(&(k as u16)).map(|e| e.0));
        }
    }
}

#[test]
fn ipv6_flows_and_a_reverse_tuple() {
    let mut t = FlowTable6::new(&FlowConfig::default()).unwrap();
    let k = FiveTuple6 {
        src: "2001:db8::1".parse().unwrap(),
        dst: "2001:db8::2".parse().unwrap(),
        sport: 40000,
        dport: 443,
        proto: 6,
    };
    t.insert(&k.key(), 1, 0).unwrap();
    let other = FiveTuple6 { sport: 40001, ..k };
    assert_eq!(t.lookup(&k.key()), Some(1));
    assert_eq!(t.lookup(&other.key()), None);
    let v4 = FiveTuple4 {
        src: [1, 2, 3, 4].into(),
        dst: [5, 6, 7, 8].into(),
        sport: 1,
        dport: 2,
        proto: 17,
    };
    assert_ne!(v4.key(), v4.reverse().key());
    assert_eq!(v4.reverse().reverse(), v4);
}

#[test]
fn bad_sizes_are_refused_and_a_held_slot_waits() {
    assert!(matches!(
        FlowTable4::new(&FlowConfig {
            capacity: 0,
            ..FlowConfig::default()
        }),
        Err(FlowError::Config(_))
    ));
    let mut t: FlowTable<2> = FlowTable::new(&FlowConfig {
        capacity: 1,
        reclaim_wait: Duration::ZERO,
    })
    .unwrap();
    let r = t.reader();
    t.insert(&key(1), 1, 0).unwrap();
    t.remove(&key(1)).unwrap();
    // The reader may still hold the freed slot.
    assert_eq!(t.insert(&key(2), 2, 0), Err(FlowError::Full(1)));
    r.quiescent();
    t.insert(&key(2), 2, 0).unwrap();
    assert_eq!(r.lookup(&key(2)), Some(2));
    assert_eq!(t.remove(&key(1)), Err(FlowError::NotFound));
}

#[test]
fn readers_find_stable_flows_while_the_writer_churns_others() {
    let mut t = FlowTable4::new(&FlowConfig {
        capacity: 256,
        ..FlowConfig::default()
    })
    .unwrap();
    for k in 0..64u16 {
        t.insert(&key(k), u64::from(k) + 1000, 0).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let r = t.reader();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let keys: Vec<[u64; 2]> = (0..64).map(key).collect();
                let mut values = vec![None; 64];
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    r.lookup_bulk(&keys, &mut values);
                    for (k, v) in values.iter().enumerate() {
                        assert_eq!(*v, Some(k as u64 + 1000));
                    }
                    r.quiescent();
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    for round in 0..20_000u32 {
        let k = 100 + (round % 150) as u16;
        t.insert(&key(k), u64::from(round), 0).unwrap();
        t.remove(&key(k)).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 0);
    }
    assert_eq!(t.stats().flows, 64);
}
