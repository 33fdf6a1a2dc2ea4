//! The one builder of SDK clients: every client the pipeline, its tests and
//! its benches use is made here, for the embedded local stack, a `pipeline
//! up` in another process, or AWS through the standard configuration.

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

/// The clients of every service the pipeline talks to. Cheap to clone.
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
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// STS (who these clients act as; never given an endpoint override).
    pub sts: aws_sdk_sts::Client,
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
    /// SNS.
    pub sns: Option<String>,
}

impl Clients {
    /// Clients from `conf` on `ep`'s endpoints (where set), each with every
    /// interceptor of `interceptors` (request counters, call recorders, test
    /// faults: an interceptor sees only the operations it looks for). S3 uses
    /// path-style addressing whenever an endpoint is overridden, as emulators
    /// need; AWS's own endpoints take virtual-hosted requests.
    pub fn build(conf: &SdkConfig, ep: &Endpoints, interceptors: &[SharedInterceptor]) -> Clients {
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
                for i in interceptors {
                    b.push_interceptor(i.clone());
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
            sns: client!(aws_sdk_sns, ep.sns.clone(), |b| b),
            sts: client!(aws_sdk_sts, None::<String>, |b| b),
        }
    }

    /// Clients from the standard AWS environment (`AWS_ENDPOINT_URL*`,
    /// profiles, region, role credentials): a `pipeline up` stack, another
    /// emulator, or a real account.
    pub async fn from_env(interceptors: &[SharedInterceptor]) -> (Clients, SdkConfig) {
        let conf = aws_config::load_from_env().await;
        (Self::build(&conf, &Endpoints::default(), interceptors), conf)
    }
}

/// An interceptor as the builder takes it.
pub fn shared(i: impl aws_smithy_runtime_api::client::interceptors::Intercept + 'static) -> SharedInterceptor {
    SharedInterceptor::new(i)
}
