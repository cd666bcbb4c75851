//! The `pmd-setup` binary: see the library's documentation.

fn main() -> std::process::ExitCode {
    pmd_setup::run("pmd-setup")
}
