//! Parse + validate + build event items, the CPU side of the ingest.
//! `cargo bench -p ingest --bench lines`; throughput is rows per second on one core.
#![allow(missing_docs)] // criterion's macros define undocumented public items

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ingest::ingest::line_item;
use ingest::reader::{LineReader, Start};
use schema::{Limits, Registry};

const HEADER: &str =
    "order_id,ordered_at,customer_id,country,sku,category,quantity,unit_price,currency,discount,gift\n";

fn input(rows: usize) -> Vec<u8> {
    let mut s = String::from(HEADER);
    for i in 0..rows {
        s.push_str(&format!(
            "o-{i},2024-0{}-1{}T10:2{}:00Z,c-{},DE,SKU-{:05},books,{},{}.{:02},EUR,{},{}\n",
            1 + i % 9,
            i % 10,
            i % 10,
            i % 5000,
            i % 20000,
            1 + i % 9,
            i % 500,
            i % 100,
            if i % 5 == 0 { "0.50" } else { "" },
            if i % 3 == 0 { "true" } else { "" }
        ));
    }
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let registry = Registry::builtin();
    let orders = registry.get("orders").unwrap().clone();
    let rows = 100_000;
    let data = input(rows);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(rows as u64));
    g.sample_size(10);
    g.bench_function("parse_only", |b| {
        b.iter(|| {
            let mut r = LineReader::new(&data[..], Start::Beginning, &orders, Limits::default()).unwrap();
            let mut n = 0;
            while let Some(l) = r.next_line().unwrap() {
                n += l.outcome.is_ok() as usize;
            }
            assert_eq!(n, rows);
        })
    });
    g.bench_function("parse_validate_build_items", |b| {
        b.iter_batched(
            || (),
            |_| {
                let mut r = LineReader::new(&data[..], Start::Beginning, &orders, Limits::default()).unwrap();
                let mut n = 0;
                while let Some(l) = r.next_line().unwrap() {
                    let (item, _) = line_item("0123456789abcdef", &orders, l);
                    n += item.len();
                }
                n
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
