//! A host without Rust (issue 17, item 6): `tests/demo` run with every directory that holds a
//! `cargo` taken off PATH builds the workspace with Debian sid's own cargo inside the testbed
//! root (`tests/testbed/cargo`, build cache in /var/cache/handoff-testbed/build), then runs what
//! it built here on the host: the demo's call through the module and handoffd built that way
//! must succeed. What it built must also run on this host's older glibc (the programs' weak
//! references to sid's newer glibc marked weak by `tests/testbed/weak-glibc.py`).

use handoff_tests::repo_root;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// PATH without any directory that holds a `cargo` (rustup's ~/.cargo/bin, /usr/bin, ...).
fn path_without_cargo() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let kept: Vec<&str> = path.split(':').filter(|d| !d.is_empty() && !Path::new(d).join("cargo").exists()).collect();
    kept.join(":")
}

#[test]
fn the_demo_builds_inside_the_testbed_root_and_runs_on_a_host_without_cargo() {
    let path = path_without_cargo();
    let which = Command::new("sh").args(["-c", "command -v cargo"]).env("PATH", &path).output().unwrap();
    assert!(!which.status.success(), "cargo is still on PATH: {}", String::from_utf8_lossy(&which.stdout));
    let suitable = Command::new(repo_root().join("tests/testbed/cargo"))
        .arg("--host-is-suitable")
        .env("PATH", &path)
        .status()
        .unwrap();
    assert!(!suitable.success(), "with cargo hidden, the host must not count as suitable");

    let t0 = Instant::now();
    let out = Command::new(repo_root().join("tests/demo"))
        .env("PATH", &path)
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("tests/demo without cargo: {:.0} s\n{stderr}", t0.elapsed().as_secs_f64());
    assert!(
        stderr
            .contains("no cargo 1.85 or newer on this host: building inside the testbed root with Debian sid's cargo"),
        "the demo says how it builds:\n{stderr}"
    );
    assert!(out.status.success(), "tests/demo failed without cargo on the host:\n{stdout}\n{stderr}");
    assert!(stdout.contains("RESULT: ") && stdout.contains("the Wi-Fi cut was bridged inside Asterisk"), "{stdout}");

    // What it ran was built by the root's rustc (its version is in every program's .comment),
    // in the build cache, and runs here on the host.
    let rustc = Command::new(repo_root().join("tests/testbed/testbed"))
        .args(["chroot", "rustc", "--version"])
        .output()
        .unwrap();
    let rustc = String::from_utf8_lossy(&rustc.stdout).split_whitespace().nth(1).unwrap_or("").to_string();
    assert!(rustc.starts_with("1."), "the root's rustc: {rustc}");
    let target = String::from_utf8(
        Command::new(repo_root().join("tests/testbed/cargo")).arg("--target-dir").output().unwrap().stdout,
    )
    .unwrap();
    let release = PathBuf::from(target.trim()).join("release");
    let stamp = format!("rustc version {rustc}");
    for program in ["handoff-demo", "handoffd", "handoffctl", "libres_handoff.so"] {
        let bytes = std::fs::read(release.join(program)).unwrap();
        assert!(
            bytes.windows(stamp.len()).any(|w| w == stamp.as_bytes()),
            "{program} in {} was not built by the root's rustc {rustc}",
            release.display()
        );
    }
    let version = Command::new(release.join("handoffd")).arg("--version").output().unwrap();
    assert!(
        version.status.success(),
        "handoffd built in the root runs here: {}",
        String::from_utf8_lossy(&version.stderr)
    );
}
