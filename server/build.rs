//! Embeds what `build_info` and `--version` report, as compile-time environment variables:
//!
//! - `BUILD_REVISION`: the `BUILD_REVISION` the build was given (the Dockerfile passes its
//!   `REVISION` argument), else `git rev-parse --short=12 HEAD`, else `unknown` (outside git,
//!   or when git is missing or fails);
//! - `BUILD_RUSTC`: `$RUSTC --version`, e.g. `rustc 1.95.0 (…)`, or `unknown`;
//! - `BUILD_TARGET`: the target triple being built for.
//!
//! Read them with `env!("BUILD_REVISION")` and so on. No dependencies. The names must not start
//! with `MSP_`: cargo also sets them in the environment of `cargo run` and `cargo test`, where
//! the configuration would read them as keys.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BUILD_REVISION");

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let given = std::env::var("BUILD_REVISION").ok().map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    let revision = match given {
        Some(r) => r,
        None => {
            watch_git_head(&manifest_dir);
            git_revision(&manifest_dir).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=BUILD_REVISION={revision}");

    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc_version = run(Command::new(rustc).arg("--version")).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_RUSTC={rustc_version}");

    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_TARGET={target}");
}

/// The first line of a command's standard output, if it ran, succeeded and printed one.
fn run(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

fn git_revision(dir: &Path) -> Option<String> {
    let rev = run(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(dir))?;
    rev.bytes().all(|b| b.is_ascii_hexdigit()).then_some(rev)
}

/// Asks cargo to re-run this script when HEAD moves: `.git/HEAD`, and the branch it points
/// to (its loose ref, and `packed-refs`). In a worktree or submodule `.git` is a file
/// (`gitdir: …`): HEAD is in that directory and the refs in its common directory. Anything
/// unreadable is left unwatched; the revision is then refreshed when build.rs changes.
fn watch_git_head(manifest_dir: &Path) {
    let Some(dot_git) = manifest_dir.ancestors().map(|d| d.join(".git")).find(|p| p.exists()) else {
        return;
    };
    let git_dir = if dot_git.is_dir() {
        dot_git
    } else {
        let Some(pointed) = std::fs::read_to_string(&dot_git)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.strip_prefix("gitdir:")).map(|p| p.trim().to_owned()))
        else {
            return;
        };
        let base = dot_git.parent().unwrap_or(Path::new("."));
        base.join(pointed)
    };
    let common_dir = std::fs::read_to_string(git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|_| git_dir.clone());

    let head = git_dir.join("HEAD");
    let Ok(head_text) = std::fs::read_to_string(&head) else {
        return;
    };
    watch(&head);
    if let Some(reference) = head_text.trim().strip_prefix("ref:") {
        let reference = reference.trim();
        watch(&git_dir.join(reference));
        watch(&common_dir.join(reference));
        watch(&common_dir.join("packed-refs"));
    }
}

/// Watches `path` if it exists (cargo would re-run the script every time for a missing one).
fn watch(path: &Path) {
    if path.is_file() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
