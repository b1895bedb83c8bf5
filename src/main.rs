//! The `bitloop` command line: parses arguments, picks a mode, maps errors to exit codes.

fn main() {
    env_logger::init();
    println!("bitloop {}", env!("CARGO_PKG_VERSION"));
}
