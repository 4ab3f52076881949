//! Stamps the git commit into the build so `/health` can say exactly what is deployed.

use std::process::Command;

fn main() {
    let commit = std::env::var("BOOKSTRACK_GIT_COMMIT")
        .ok()
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BOOKSTRACK_GIT_COMMIT={commit}");
    // Re-stamp when HEAD moves, not on every build.
    for path in [".git/HEAD", ".git/refs/heads"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=BOOKSTRACK_GIT_COMMIT");
}
