//! `blocklet-migrate serve` and `service-token`: the hosting service's flags, handed to
//! [`crate::service::serve`].

use super::{EXIT_FAILED, EXIT_SUCCESS, EXIT_USAGE};
use crate::job::console;
use crate::service::{self, Role, config::ServiceConfig};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The service's configuration: queue, servers, components, tenants (docs/hosting.md).
    #[arg(long, value_name = "FILE", required_unless_present = "print_openapi")]
    pub config: Option<PathBuf>,
    /// Where the HTTP API listens (default: the file's `listen`).
    #[arg(long, value_name = "ADDR", conflicts_with = "no_api")]
    pub listen: Option<String>,
    /// Run no HTTP API: only take jobs from the queue.
    #[arg(long)]
    pub no_api: bool,
    /// Jobs this process runs at once (default: the file's `jobs_at_once`); 0: an API only.
    #[arg(long, value_name = "N")]
    pub jobs_at_once: Option<usize>,
    /// The name this process gives itself in job records (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    pub worker_name: Option<String>,
    /// Print the API's OpenAPI document and exit.
    #[arg(long)]
    pub print_openapi: bool,
}

pub async fn run(args: ServeArgs) -> u8 {
    if args.print_openapi {
        print!("{}", service::api::openapi_json());
        return EXIT_SUCCESS;
    }
    let Some(path) = args.config else { return EXIT_USAGE };
    let config = match ServiceConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            console::error(&e);
            return EXIT_USAGE;
        }
    };
    if args.no_api && args.jobs_at_once == Some(0) {
        console::error("--no-api with --jobs-at-once 0 leaves this process nothing to do");
        return EXIT_USAGE;
    }
    let role = Role {
        listen: if args.no_api { None } else { Some(args.listen.unwrap_or_else(|| config.listen.clone())) },
        jobs_at_once: args.jobs_at_once.unwrap_or(config.jobs_at_once),
        worker_name: args.worker_name.unwrap_or_else(service::default_worker_name),
    };
    match service::serve(config, role).await {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => {
            console::error(&e);
            EXIT_FAILED
        }
    }
}

/// Print a new token (for the tenant) and its digest (for the configuration).
pub fn new_token() -> u8 {
    match service::config::new_token() {
        Ok((token, digest)) => {
            println!("token = {token}        # give this to the tenant; it is not stored anywhere");
            println!("token_sha256 = \"{digest}\"  # put this in the tenant's [[tenant]] entry");
            EXIT_SUCCESS
        }
        Err(e) => {
            console::error(&e);
            EXIT_FAILED
        }
    }
}
