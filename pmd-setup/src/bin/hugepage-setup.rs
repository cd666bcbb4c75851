//! `hugepage-setup`: the former name of `pmd-setup`, kept for one release. Prints one
//! deprecation line to stderr, then behaves exactly like `pmd-setup`.

fn main() -> std::process::ExitCode {
    eprintln!(
        "hugepage-setup: this name is deprecated and will be removed in a later release; use pmd-setup (same commands)"
    );
    pmd_setup::run("hugepage-setup")
}
