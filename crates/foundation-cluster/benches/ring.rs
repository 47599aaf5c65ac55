//! The ring's owner lookup beside rendezvous hashing (highest random weight), the other
//! common way to agree on an owner, measured in the same run over the same members.
//!
//! Run with: `cargo bench -p foundation-cluster --bench ring`.

#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use foundation_cluster::ring::HashRing;
use std::hint::black_box;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Rendezvous hashing: the node with the highest `hash(key, node)` owns the key.
fn rendezvous<'a>(nodes: &'a [String], seeds: &[u64], key: &[u8]) -> Option<&'a String> {
    nodes
        .iter()
        .zip(seeds)
        .max_by_key(|(_, seed)| xxh3_64_with_seed(key, **seed))
        .map(|(n, _)| n)
}

fn lookups(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("user:{i}").into_bytes())
        .collect();
    let mut g = c.benchmark_group("ring_owner");
    for n in [3usize, 10, 50] {
        let nodes: Vec<String> = (0..n).map(|i| format!("node-{i}@10.0.0.{i}")).collect();
        let seeds: Vec<u64> = nodes
            .iter()
            .map(|node| xxhash_rust::xxh3::xxh3_64(node.as_bytes()))
            .collect();
        let ring = HashRing::new(nodes.clone());
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("ring", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(ring.owner(black_box(&keys[i])))
            })
        });
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("rendezvous", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(rendezvous(&nodes, &seeds, black_box(&keys[i])))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
