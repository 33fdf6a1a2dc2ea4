//! One set of SDK clients for every service the pipeline talks to, built for
//! the embedded local stack or from the standard AWS configuration.

use aws_config::SdkConfig;

use crate::metrics::{CallRecorder, RequestCounter};
use crate::stack::LocalStack;

/// The clients. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Clients {
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// STS (who these clients act as; never given an endpoint override).
    pub sts: aws_sdk_sts::Client,
}

/// Interceptors every client of a set gets.
#[derive(Debug, Clone, Default)]
pub struct Observers {
    /// Counts requests.
    pub counter: Option<RequestCounter>,
    /// Records the distinct calls, with their resources.
    pub recorder: Option<CallRecorder>,
}

impl From<Option<&RequestCounter>> for Observers {
    fn from(counter: Option<&RequestCounter>) -> Self {
        Observers {
            counter: counter.cloned(),
            recorder: None,
        }
    }
}

impl Clients {
    /// Clients on the local stack, counting requests into `counter` if given.
    pub fn local(stack: &LocalStack, counter: Option<&RequestCounter>) -> Clients {
        Self::build(&stack.sdk_config(), &Endpoints::of(stack), Observers::from(counter))
    }

    /// Clients from an SDK configuration (the standard chain: `AWS_ENDPOINT_URL*`,
    /// profiles, region, role credentials). S3 uses path-style addressing when an
    /// endpoint is overridden, as emulators need.
    pub fn from_conf(conf: &SdkConfig, counter: Option<&RequestCounter>) -> Clients {
        Self::build(conf, &Endpoints::default(), Observers::from(counter))
    }

    /// Clients from `conf` on `ep`'s endpoints (where set). S3 uses path-style
    /// addressing whenever an endpoint is overridden, as emulators need.
    pub fn build(conf: &SdkConfig, ep: &Endpoints, observers: impl Into<Observers>) -> Clients {
        let observers = observers.into();
        let path_style = ep.s3.is_some()
            || conf.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        macro_rules! client {
            ($sdk:ident, $endpoint:expr, $extra:expr) => {{
                let mut b = $sdk::config::Builder::from(conf);
                if let Some(e) = $endpoint {
                    b = b.endpoint_url(e);
                }
                if let Some(c) = &observers.counter {
                    b = b.interceptor(c.clone());
                }
                if let Some(r) = &observers.recorder {
                    b = b.interceptor(r.clone());
                }
                #[allow(clippy::redundant_closure_call)]
                let b = ($extra)(b);
                $sdk::Client::from_conf(b.build())
            }};
        }
        Clients {
            s3: client!(aws_sdk_s3, ep.s3.clone(), |b: aws_sdk_s3::config::Builder| b
                .force_path_style(path_style)),
            dynamodb: client!(aws_sdk_dynamodb, ep.dynamodb.clone(), |b| b),
            streams: client!(aws_sdk_dynamodbstreams, ep.dynamodb.clone(), |b| b),
            sqs: client!(aws_sdk_sqs, ep.sqs.clone(), |b| b),
            sts: client!(aws_sdk_sts, None::<String>, |b| b),
        }
    }
}

/// Endpoints that override the configuration's, per service.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// S3.
    pub s3: Option<String>,
    /// DynamoDB and DynamoDB Streams.
    pub dynamodb: Option<String>,
    /// SQS.
    pub sqs: Option<String>,
}

impl Endpoints {
    /// The local stack's.
    pub fn of(stack: &LocalStack) -> Endpoints {
        Endpoints {
            s3: Some(stack.s3_endpoint.clone()),
            dynamodb: Some(stack.dynamodb_endpoint.clone()),
            sqs: Some(stack.sqs_endpoint.clone()),
        }
    }
}
