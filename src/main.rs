//! The `bitloop` binary: a thin edge over the library. Parses arguments, picks a
//! mode, maps errors to exit codes; everything else lives in the library.

mod cli;

fn main() -> std::process::ExitCode {
    env_logger::init();
    cli::main()
}
