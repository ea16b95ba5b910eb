//! The `blocklet-migrate` binary; everything lives in the library's [`blocklet_migrate::cli`].

fn main() -> std::process::ExitCode {
    blocklet_migrate::cli::main()
}
