//! How the CLI shows what it read: tables for people (JSON is serde's).

use crate::pump::RunSummary;
use crate::queries::{AggregateRow, FileSummary, Reject, StatusRow};
use crate::rebuild::Rebuild;

/// Pretty JSON on stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// One file as a table row; with the work columns (`written`, `present`) for `run`.
pub fn file_row(f: &FileSummary, work: bool) -> String {
    let work = if work {
        format!(" {:>7} {:>7}", f.written, f.already_present)
    } else {
        String::new()
    };
    let note = match (&f.reason, &f.chunks) {
        (Some(r), _) => r.clone(),
        (None, Some(c)) => match c.total {
            Some(t) => format!("chunks {}/{t} done", c.done),
            None => format!("chunks {}/{}+ done (planning)", c.done, c.planned),
        },
        (None, None) => String::new(),
    };
    format!(
        "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8}{work}  {note}",
        f.key,
        format!("{:?}", f.outcome).to_lowercase(),
        f.status.as_str(),
        f.rows,
        f.accepted,
        f.rejected,
    )
}

/// The uploads and their files' states.
pub fn print_status(rows: &[StatusRow]) {
    println!(
        "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8}  reason or progress",
        "key", "upload", "status", "lines", "accepted", "rejected"
    );
    for r in rows {
        match &r.file {
            Some(f) => println!("{}", file_row(f, false)),
            None => match &r.ignored {
                Some(why) => println!(
                    "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8}  {why}",
                    r.key, "-", "ignored", "", "", ""
                ),
                None => println!("{:<46} {:<9} {:<9}", r.key, "-", "waiting"),
            },
        }
    }
}

/// One feed message on one line.
pub fn print_feed_message(m: &serde_json::Value) {
    let s = |k: &str| m.get(k).and_then(|v| v.as_str()).unwrap_or("");
    match s("type") {
        "aggregate.changed" => println!(
            "aggregate.changed  {}.{} {}  {}  (v{})",
            s("dataset"),
            s("aggregate"),
            m.get("group").map(|g| g.to_string()).unwrap_or_default(),
            m.get("values").map(|g| g.to_string()).unwrap_or_default(),
            m.get("version").map(|g| g.to_string()).unwrap_or_default(),
        ),
        "file.completed" => println!(
            "file.completed     {} {} {}: {} lines, {} accepted, {} rejected",
            s("dataset"),
            m.get("keys").map(|g| g.to_string()).unwrap_or_default(),
            s("status"),
            m.get("rows").map(|g| g.to_string()).unwrap_or_default(),
            m.get("accepted").map(|g| g.to_string()).unwrap_or_default(),
            m.get("rejected").map(|g| g.to_string()).unwrap_or_default(),
        ),
        _ => println!("{m}"),
    }
}

/// The aggregates, grouped by aggregate, `limit` groups each.
pub fn print_aggregates(aggregates: &[AggregateRow], limit: usize) {
    let mut by_aggregate: std::collections::BTreeMap<(&str, &str), Vec<&AggregateRow>> =
        std::collections::BTreeMap::new();
    for a in aggregates {
        by_aggregate.entry((&a.dataset, &a.aggregate)).or_default().push(a);
    }
    for ((dataset, aggregate), rows) in by_aggregate {
        println!("{dataset}.{aggregate}: {} groups", rows.len());
        for r in rows.iter().take(limit) {
            let measures: Vec<String> = r.measures.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let group = r.group.join(" | ").escape_debug().to_string();
            println!("  {group:<40} {}  (v{})", measures.join(" "), r.version);
        }
        if rows.len() > limit {
            println!(
                "  ... {} more (`pipeline aggregates` or --json shows all)",
                rows.len() - limit
            );
        }
    }
}

/// What a run did: per file, totals, the projector, the aggregates.
pub fn print_run(s: &RunSummary) {
    println!(
        "{:<46} {:<9} {:<9} {:>7} {:>8} {:>8} {:>7} {:>7}  reason",
        "key", "upload", "status", "lines", "accepted", "rejected", "written", "present"
    );
    for f in &s.files {
        println!("{}", file_row(f, true));
    }
    let (rows, acc, rej, wr, ap) = s.files.iter().fold((0, 0, 0, 0, 0), |a, f| {
        (
            a.0 + f.rows,
            a.1 + f.accepted,
            a.2 + f.rejected,
            a.3 + f.written,
            a.4 + f.already_present,
        )
    });
    println!(
        "{:<46} {:<9} {:<9} {rows:>7} {acc:>8} {rej:>8} {wr:>7} {ap:>7}",
        "total", "", ""
    );
    println!(
        "\n{} files, {} notifications handled; the ingest made {} DynamoDB and {} S3 requests.",
        s.files.len(),
        s.ingest_messages,
        s.dynamodb_requests,
        s.s3_requests,
    );
    println!(
        "projector: {} stream records read, {} events folded, {} aggregate changes, {} feed messages sent.",
        s.stream_records, s.events_projected, s.aggregates_changed, s.feed_messages
    );
    if s.ingest_dead_letters > 0 || s.stream_failures > 0 {
        println!(
            "dead letters: {} in the ingest DLQ, {} stream records on the on-failure queue.",
            s.ingest_dead_letters, s.stream_failures
        );
    }
    println!();
    print_aggregates(&s.aggregates, 8);
    let rate = rows as f64 / s.seconds.max(1e-9);
    println!("\n{rows} lines in {:.1} s ({rate:.0} lines/s end to end).", s.seconds);
}

/// A file's rejected lines.
pub fn print_rejects(summary: &FileSummary, rejects: &[Reject]) {
    println!("{}: {} lines, {} rejected", summary.key, summary.rows, summary.rejected);
    for r in rejects {
        println!(
            "  line {:>6}  {:<14} {}\n               {}",
            r.line,
            r.column.as_deref().unwrap_or("-"),
            r.reason,
            r.raw.escape_debug()
        );
    }
}

/// A rebuild's differences from the live aggregates.
pub fn print_rebuild(r: &Rebuild) {
    println!(
        "rebuilt {} groups from {} events; the aggregates table has {} groups.",
        r.groups, r.events, r.live_groups
    );
    for d in &r.differences {
        println!(
            "  {}.{} {:?} {}: events say {}, table has {}",
            d.dataset,
            d.aggregate,
            d.group,
            d.measure.as_deref().unwrap_or("(group)"),
            d.expected.as_deref().unwrap_or("nothing"),
            d.live.as_deref().unwrap_or("nothing")
        );
    }
    if r.differences.is_empty() {
        println!("no differences.");
    } else {
        println!("{} difference(s).", r.differences.len());
    }
}
