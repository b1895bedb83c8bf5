//! The `bitloop` binary: a thin edge over the library. Parses arguments, picks a
//! mode, maps errors to exit codes; everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    // Warnings show without RUST_LOG: an unusable resume file, a tracker that
    // fails. RUST_LOG=info or debug shows more.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    cli::main()
}
