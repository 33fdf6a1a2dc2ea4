//! Where a command acts: the embedded local stack (the default), a running
//! `pipeline up`, or a deployment reached through the standard AWS
//! configuration with names from the Terraform outputs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use localstack::clients::{Clients, Endpoints};
use localstack::notify::Rule;
use localstack::resources::{self, Deployment};
use localstack::settings::{Names, Settings};
use localstack::{LocalStack, Ports, State};

/// How to find the pipeline.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Local state directory (the embedded stack's data, stream positions).
    #[arg(long, global = true, default_value = ".pipeline", env = "PIPELINE_STATE")]
    pub state: PathBuf,
    /// Act on a deployment through the standard AWS configuration
    /// (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...) instead of the local stack.
    #[arg(long, global = true)]
    pub aws: bool,
    /// `terraform output -json` of the deployment (implies --aws).
    #[arg(long, global = true, env = "PIPELINE_OUTPUTS")]
    pub outputs: Option<PathBuf>,
    /// Run the reference consumer on the local stack: its queue subscribed
    /// to the feed topic, its read model table, and its handler polled here.
    /// Once on, it stays on for the state directory (as a deployed module
    /// would); on a deployment, the Terraform outputs say whether it is there.
    #[arg(long, global = true)]
    pub consumer: bool,
}

/// Where `pipeline up` says it serves, written to its state directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UpFile {
    /// DynamoDB and Streams endpoint.
    pub dynamodb: String,
    /// S3 endpoint.
    pub s3: String,
    /// SQS endpoint.
    pub sqs: String,
    /// SNS endpoint.
    pub sns: String,
    /// The serving process.
    pub pid: u32,
}

/// The file `pipeline up` writes in its state directory.
pub fn up_file(state: &Path) -> PathBuf {
    state.join("up.json")
}

/// A pipeline to act on.
pub struct Target {
    /// Clients for it.
    pub clients: Clients,
    /// Its resources.
    pub deployment: Deployment,
    /// The SDK configuration behind `clients` (for role credentials and more clients).
    pub conf: SdkConfig,
    /// Endpoint overrides behind `clients`.
    pub endpoints: Endpoints,
    /// The local state directory.
    pub state: PathBuf,
    /// The embedded stack, when this process serves it.
    pub stack: Option<LocalStack>,
    /// Whether this is the local stack (embedded or `pipeline up`).
    pub local: bool,
}

impl Target {
    /// Open what `args` names, creating the local stack's resources if needed.
    pub async fn open(args: &TargetArgs) -> Result<Target> {
        if args.aws || args.outputs.is_some() {
            let path = args.outputs.as_ref().context(
                "--aws needs the deployment's names: pass --outputs FILE, where FILE is `terraform -chdir=terraform output -json`",
            )?;
            let json = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let names = Names::from_terraform_outputs(&json)?;
            let conf = aws_config::load_from_env().await;
            let clients = Clients::build(&conf, &Endpoints::default(), &[]);
            let deployment = resources::resolve(&clients, &names).await?;
            std::fs::create_dir_all(&args.state).with_context(|| format!("creating {}", args.state.display()))?;
            return Ok(Target {
                clients,
                deployment,
                conf,
                endpoints: Endpoints::default(),
                state: args.state.clone(),
                stack: None,
                local: false,
            });
        }
        if let Some(up) = running_up(&args.state).await {
            let conf = localstack::identity::sdk_config();
            let endpoints = Endpoints {
                s3: Some(up.s3),
                dynamodb: Some(up.dynamodb),
                sqs: Some(up.sqs),
                sns: Some(up.sns),
            };
            let clients = Clients::build(&conf, &endpoints, &[]);
            let mut names = Names::local();
            if !resources::consumer_provisioned(&clients, &names).await {
                names.consumer = None;
            }
            let deployment = resources::resolve(&clients, &names).await?;
            return Ok(Target {
                clients,
                deployment,
                conf,
                endpoints,
                state: args.state.clone(),
                stack: None,
                local: true,
            });
        }
        Self::embedded(&args.state, Ports::default(), args.consumer).await
    }

    /// Start the embedded stack on `state` and create its resources (with
    /// the reference consumer's if `consumer`, or if it was there before).
    pub async fn embedded(state: &Path, ports: Ports, consumer: bool) -> Result<Target> {
        let stack = LocalStack::start(State::Dir(state.to_path_buf()), ports).await?;
        Self::on_stack(stack, state, consumer).await
    }

    /// Use a started stack, creating its resources and notifications.
    pub async fn on_stack(stack: LocalStack, state: &Path, consumer: bool) -> Result<Target> {
        let clients = stack.clients();
        let names = Names::local();
        let existed = resources::consumer_provisioned(&clients, &names).await;
        let deployment = resources::provision(&clients, &names, consumer || existed).await?;
        if let (Some(c), false) = (&deployment.consumer, existed) {
            // A consumer that starts after the pipeline ran: its queue is
            // subscribed now, so every later change reaches it; the groups
            // before it come from a snapshot (versions kept, so the two meet
            // without a gap or a double count).
            let model = feed::DynamoReadModel::new(clients.dynamodb.clone(), &c.read_model_table);
            for g in feed::snapshot(&clients.dynamodb, &names.aggregates_table).await? {
                model.apply(&g).await?;
            }
        }
        let s = Settings::get();
        for suffix in &s.upload_suffixes {
            stack.notify(Rule {
                bucket: names.bucket.clone(),
                prefix: s.upload_prefix.clone(),
                suffix: suffix.clone(),
                queue_url: deployment.ingest_queue_url.clone(),
            });
        }
        Ok(Target {
            conf: stack.sdk_config(),
            endpoints: stack.endpoints(),
            clients,
            deployment,
            state: state.to_path_buf(),
            stack: Some(stack),
            local: true,
        })
    }

    /// Clients for a handler (and the pollers that stand in for its event
    /// source mapping, which on AWS act with the function's role): with
    /// `interceptors` (counters, recorders), and `role`'s credentials if given.
    pub async fn handler_clients(&self, role: Option<&str>, interceptors: &[SharedInterceptor]) -> Clients {
        let conf = match role {
            None => self.conf.clone(),
            Some(arn) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(arn)
                    .session_name("pipeline-local-handler")
                    .configure(&self.conf)
                    .build_from_provider(self.conf.credentials_provider().expect("configured credentials"))
                    .await;
                self.conf
                    .to_builder()
                    .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(provider))
                    .build()
            }
        };
        Clients::build(&conf, &self.endpoints, interceptors)
    }

    /// Stop the embedded stack, if this process serves one.
    pub async fn close(self) {
        if let Some(stack) = self.stack {
            stack.stop().await;
        }
    }
}

/// The `pipeline up` serving `state`, if one answers.
async fn running_up(state: &Path) -> Option<UpFile> {
    let up: UpFile = serde_json::from_slice(&std::fs::read(up_file(state)).ok()?).ok()?;
    let addr = up.sqs.strip_prefix("http://")?.to_owned();
    match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Some(up),
        _ => None,
    }
}
