//! A long-polling consumer of an SQS queue of feed messages: partial-batch
//! deletes, visibility kept alive for slow handlers, a graceful stop.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
};
use schema::feed::FeedMessage;

use crate::message::parse;

/// One message handed to the handler.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The feed message.
    pub message: FeedMessage,
    /// SQS's id of this copy (a duplicate has another; the feed `id` is the same).
    pub sqs_message_id: String,
    /// How many times SQS has handed it out, this one included.
    pub receive_count: u32,
}

/// How the consumer polls.
#[derive(Debug, Clone)]
pub struct Options {
    /// Long-poll wait per receive (SQS allows 0 to 20 seconds).
    pub wait: Duration,
    /// Messages per receive (1 to 10).
    pub max_messages: i32,
    /// Visibility of received messages; kept alive while the batch runs.
    pub visibility_timeout: Duration,
    /// How often a running batch's visibility is extended (well under the timeout).
    pub extend_every: Duration,
    /// Stop at the first receive that returns nothing (draining, not following).
    pub stop_when_empty: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wait: Duration::from_secs(20),
            max_messages: 10,
            visibility_timeout: Duration::from_secs(60),
            extend_every: Duration::from_secs(20),
            stop_when_empty: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received (each copy counts).
    pub received: u64,
    /// Handled without error and deleted (or deleted on a later receive).
    pub handled: u64,
    /// The handler returned an error: left on the queue to come back.
    pub failed: u64,
    /// Not a message this consumer reads ([`crate::MessageError`]): left on
    /// the queue, so the queue's redrive policy dead-letters it.
    pub poison: u64,
    /// Deletes SQS refused (the message comes back; applying it again is harmless).
    pub delete_failures: u64,
    /// Visibility extensions (one request per batch per extension).
    pub extensions: u64,
}

/// The consumer could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// `ReceiveMessage` failed after the SDK's retries.
    #[error("ReceiveMessage from {queue_url}")]
    Receive {
        /// The queue.
        queue_url: String,
        /// The SDK's error.
        #[source]
        source: Box<SdkError<ReceiveMessageError>>,
    },
}

/// Consumes one queue.
#[derive(Debug, Clone)]
pub struct Consumer {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    options: Options,
}

impl Consumer {
    /// A consumer of `queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, queue_url: impl Into<String>, options: Options) -> Self {
        Consumer {
            sqs,
            queue_url: queue_url.into(),
            options,
        }
    }

    /// Receive, hand each message to `handle` in order, delete those it
    /// handled, until `shutdown` completes (a batch under way is finished
    /// first; a long poll under way is abandoned, and SQS keeps whatever it
    /// was about to return invisible until the visibility timeout).
    pub async fn run<F, E>(&self, mut handle: F, shutdown: impl Future<Output = ()>) -> Result<Stats, ConsumerError>
    where
        F: AsyncFnMut(Delivery) -> Result<(), E>,
        E: Display,
    {
        let o = &self.options;
        let mut stats = Stats::default();
        tokio::pin!(shutdown);
        loop {
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(o.max_messages)
                .wait_time_seconds(o.wait.as_secs() as i32)
                .visibility_timeout(o.visibility_timeout.as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send();
            let out = tokio::select! {
                biased;
                _ = &mut shutdown => return Ok(stats),
                r = receive => r.map_err(|e| ConsumerError::Receive {
                    queue_url: self.queue_url.clone(),
                    source: Box::new(e),
                })?,
            };
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                if o.stop_when_empty {
                    return Ok(stats);
                }
                continue;
            }
            stats.received += messages.len() as u64;
            self.batch(messages, &mut handle, &mut stats).await;
        }
    }

    async fn batch<F, E>(&self, messages: Vec<Message>, handle: &mut F, stats: &mut Stats)
    where
        F: AsyncFnMut(Delivery) -> Result<(), E>,
        E: Display,
    {
        let mut work = Vec::new();
        for m in messages {
            let receipt = m.receipt_handle.clone().unwrap_or_default();
            let sqs_message_id = m.message_id.clone().unwrap_or_default();
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            match parse(m.body().unwrap_or_default()) {
                Ok(message) => work.push((
                    receipt,
                    Delivery {
                        message,
                        sqs_message_id,
                        receive_count,
                    },
                )),
                Err(e) => {
                    stats.poison += 1;
                    tracing::warn!(
                        sqs_message_id,
                        receive_count,
                        kind = e.kind(),
                        error = %e,
                        "poison message left for the dead-letter queue"
                    );
                }
            }
        }
        let receipts: Vec<String> = work.iter().map(|(r, _)| r.clone()).collect();
        let run = async {
            let mut done = Vec::new();
            for (receipt, d) in work {
                let id = d.message.id().to_owned();
                match handle(d).await {
                    Ok(()) => done.push(receipt),
                    Err(e) => tracing::warn!(id, error = %e, "handler failed; the message comes back"),
                }
            }
            done
        };
        tokio::pin!(run);
        let every = self.options.extend_every;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let done = loop {
            tokio::select! {
                done = &mut run => break done,
                _ = tick.tick() => {
                    self.extend(&receipts).await;
                    stats.extensions += 1;
                }
            }
        };
        stats.failed += (receipts.len() - done.len()) as u64;
        stats.handled += done.len() as u64;
        stats.delete_failures += self.delete(&done).await;
    }

    /// Make the batch's messages invisible for another visibility timeout.
    async fn extend(&self, receipts: &[String]) {
        let entries: Vec<_> = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .visibility_timeout(self.options.visibility_timeout.as_secs() as i32)
                    .build()
                    .expect("id and receipt handle are set")
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let r = self
            .sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        if let Err(e) = r {
            // The messages may come back while still being handled: applying
            // them twice is harmless, so this is worth a warning, not a stop.
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "extending visibility failed");
        }
    }

    /// Delete handled messages; returns how many SQS did not delete.
    async fn delete(&self, receipts: &[String]) -> u64 {
        let mut failed = 0;
        for chunk in receipts.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            match self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => failed += out.failed().len() as u64,
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "DeleteMessageBatch failed");
                    failed += chunk.len() as u64;
                }
            }
        }
        failed
    }
}
