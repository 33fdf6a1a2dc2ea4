//! The operator's CLI, `pipeline`: run the pipeline on the embedded local
//! stack or a deployment, and read what it did. The stack itself is the
//! `localstack` crate; the handlers are `ingest` and `projector`.
//!
//! # Layout
//!
//! * [`cli`]: the command line, as clap parses it.
//! * [`commands`]: one module per command, and the dispatch.
//! * [`target`]: where a command acts (embedded stack, `pipeline up`, AWS).
//! * [`pump`]: upload and follow files through the pipeline, as the event
//!   source mappings would; `pipeline up`'s pollers.
//! * [`queries`]: what every reading command reads (files, uploads, rejects, aggregates).
//! * [`rebuild`]: aggregates recomputed from the events alone, compared with the live ones.
//! * [`reingest`]: a failed file reset and notified again (an operator's repair).
//! * [`render`]: tables for people.
//! * [`bench`]: end-to-end measurements on the local stack.
#![deny(missing_docs)]

pub mod bench;
pub mod cli;
pub mod commands;
pub mod pump;
pub mod queries;
pub mod rebuild;
pub mod reingest;
pub mod render;
pub mod target;
