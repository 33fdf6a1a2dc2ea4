//! `pipeline contract`: what the local stack runs with, for comparison with a
//! deployment: the variables each handler reads, the notification filter, and
//! the event source mappings' settings (JSON).

use anyhow::Result;

use crate::render;

pub(super) fn exec() -> Result<i32> {
    let s = localstack::settings::Settings::get();
    render::print_json(&serde_json::json!({
        "ingest": {
            "env": ingest::config::ENV_VARS,
            "mapping": {
                "batch_size": s.ingest.batch_size,
                "maximum_batching_window_in_seconds": s.ingest.batching_window_seconds,
                "maximum_concurrency": s.ingest.maximum_concurrency,
                "function_response_types": ["ReportBatchItemFailures"],
            },
        },
        "projector": {
            "env": projector::ENV_VARS,
            "mapping": {
                "batch_size": s.projector.batch_size,
                "maximum_batching_window_in_seconds": s.projector.batching_window_seconds,
                "bisect_batch_on_function_error": s.projector.bisect_batch_on_function_error,
                "maximum_retry_attempts": s.projector.maximum_retry_attempts,
                "maximum_record_age_in_seconds": s.projector.maximum_record_age_seconds,
                "parallelization_factor": s.projector.parallelization_factor,
                "function_response_types": ["ReportBatchItemFailures"],
                "filters": s.projector.filters,
            },
        },
        "consumer": {
            "env": feed::handler::ENV_VARS,
            "mapping": {
                "batch_size": s.consumer.batch_size,
                "maximum_batching_window_in_seconds": s.consumer.batching_window_seconds,
                "maximum_concurrency": s.consumer.maximum_concurrency,
                "function_response_types": ["ReportBatchItemFailures"],
            },
            "filter_policy": s.consumer.filter_policy,
        },
        "notification": {
            "prefix": s.upload_prefix,
            "suffixes": s.upload_suffixes,
        },
    }))?;
    Ok(0)
}
