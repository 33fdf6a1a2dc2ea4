//! Events per second through the fold, one core: `cargo bench -p projector --bench fold`.
#![allow(missing_docs)] // criterion's macros define undocumented public items

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use projector::fold::{Deltas, Folder};
use schema::{Fields, Registry};

fn rows(n: usize) -> Vec<Fields> {
    (0..n)
        .map(|i| {
            [
                ("ordered_at", format!("2024-0{}-1{}T10:00:00Z", 1 + i % 3, i % 10)),
                ("country", ["DE", "FR", "GB", "US"][i % 4].to_owned()),
                ("currency", "EUR".to_owned()),
                ("category", ["books", "toys", "garden"][i % 3].to_owned()),
                ("quantity", (1 + i % 9).to_string()),
                ("unit_price", format!("{}.{:02}", i % 500, i % 100)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ds = Registry::builtin().get("orders").unwrap().clone();
    let folder = Folder::new(&ds);
    let input = rows(100_000);
    let mut g = c.benchmark_group("projector");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.sample_size(10);
    g.bench_function("fold", |b| {
        b.iter(|| {
            let mut d = Deltas::new();
            for (i, r) in input.iter().enumerate() {
                folder.apply(r, &mut d).unwrap();
                folder.file_stats("f", true, i as i64, &mut d);
            }
            d.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
