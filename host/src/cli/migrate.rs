//! `blocklet-migrate --dialect …`: the flags as a job spec, run by the job API.

use super::{Dialect, MigrateArgs};
use crate::job::{self, ComponentChoice, JobOptions, JobSpec, OutputOptions, console, signals};
use crate::sandbox::{Cancel, Limits};

/// Run the migration the flags describe; its exit code.
pub async fn run(args: MigrateArgs) -> u8 {
    let spec = JobSpec {
        direction: Dialect::direction(args.dialect.as_deref()),
        data_dir: args.data_dir,
        postgres_url: std::env::var("ABT_NODE_POSTGRES_URL").unwrap_or_default(),
        options: JobOptions {
            force: args.force,
            dry_run: args.dry_run,
            skip_rejects: args.skip_rejects,
            allow_running_server: args.allow_running_server,
            batch_rows: args.batch_rows,
            parallel: args.parallel,
            databases: None,
            confine_to: None,
            session_tag: None,
            end_sessions_of: Vec::new(),
        },
        component: match args.component {
            Some(path) => match args.trust.policy() {
                Ok(trust) => ComponentChoice::File { path, trust },
                Err(e) => {
                    console::error(&e.to_string());
                    return e.exit_code();
                }
            },
            None => ComponentChoice::Bundled,
        },
        limits: Limits {
            memory_bytes: (args.memory_limit as usize) << 20,
            cpu_seconds: args.cpu_limit,
            timeout_seconds: args.timeout,
            stall_seconds: args.stall_limit,
        },
        output: OutputOptions {
            report: args.report,
            rejects: args.rejects,
            quiet: args.quiet,
            progress_events: args.progress_events,
            shares_terminal: false,
            progress_sink: None,
        },
        cancel: Cancel::default(),
        gate: None,
    };
    // The job then ends its server-side work, removes what it created and exits with 130.
    signals::cancel_on_signals(
        spec.cancel.clone(),
        "cancelling: ending the job's work and removing what it created (again to quit at once)",
    );
    job::run(spec).await.exit_code
}
