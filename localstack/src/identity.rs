//! Who the local stack is: its region, account and the credentials its
//! emulators accept. Every module that names them takes them from here.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// Access key the emulators accept (any SDK can use it).
pub const ACCESS_KEY: &str = "local";
/// Secret key the emulators accept.
pub const SECRET_KEY: &str = "localsecret";
/// Region of the local stack.
pub const REGION: &str = "us-east-1";
/// The account id the local stack reports (in queue URLs and ARNs).
pub const ACCOUNT: &str = "000000000000";

/// SDK configuration with the local stack's credentials and region (no endpoint).
pub fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "local-stack"),
        ))
        .build()
}
