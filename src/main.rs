//! The `conveyor` command: everything happens in the library; this maps the
//! outcome to the process exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(conveyor::cli::main() as u8)
}
