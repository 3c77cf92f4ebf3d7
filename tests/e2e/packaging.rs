//! The packaging: the systemd units pass `systemd-analyze verify`, the
//! packaged config is what `firefly config init` writes, and (with
//! `cargo-deb` installed) the Debian package builds from the test binary and
//! unpacks into a fresh root with every file in place and a `firefly` that
//! runs.
//!
//! A missing tool skips with a printed reason, unless `CI` is set, where it
//! fails (`.ci/setup` installs `systemd` and `cargo-deb`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program ARGS` runs; if not, fails under CI, else says why it skips.
fn have(program: &str, args: &[&str], why: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {program} ({why}; .ci/setup installs it)"
        );
        println!("skipped: {program} is not installed ({why})");
    }
    ok
}

/// `systemd-analyze verify` on `unit` with its `/usr/bin/firefly` pointed at
/// the test binary (verify checks that the command exists); the lines it
/// prints about the unit.
fn verify(unit: &str, user: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("packaging").join(unit)).unwrap();
    let path = dir.path().join(unit);
    std::fs::write(
        &path,
        text.replace("/usr/bin/firefly", env!("CARGO_BIN_EXE_firefly")),
    )
    .unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let mut command = Command::new("systemd-analyze");
    if user {
        command.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    let out = command
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(unit))
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        problems.push(format!("exit {}: {stderr}", out.status));
    }
    problems
}

#[test]
fn the_systemd_units_verify_cleanly() {
    if !have(
        "systemd-analyze",
        &["--version"],
        "verifying the systemd units",
    ) {
        return;
    }
    assert_eq!(verify("firefly.service", false), Vec::<String>::new());
    assert_eq!(verify("firefly-user.service", true), Vec::<String>::new());
    // The check can fail: a unit with a misspelt key is reported.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/bin/true\nProtectSytem=strict\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("ProtectSytem"));
}

#[test]
fn the_packaged_config_is_what_config_init_writes() {
    let out = crate::util::firefly(&["config", "init", "--path", "-"]);
    assert!(out.status.success());
    let packaged = std::fs::read(repo().join("packaging/config.toml")).unwrap();
    assert!(
        packaged == out.stdout,
        "packaging/config.toml is stale: `firefly config init --path packaging/config.toml --force`"
    );
}

/// Every file the package must put in place, relative to the root.
const PACKAGED: &[&str] = &[
    "usr/bin/firefly",
    "lib/systemd/system/firefly.service",
    "usr/lib/systemd/user/firefly.service",
    "etc/firefly/config.toml",
    "usr/share/doc/firefly/README.md",
    "usr/share/doc/firefly/EVENTS.md",
    "usr/share/doc/firefly/API.md",
];

#[test]
fn the_debian_package_installs_into_a_fresh_root() {
    if !have(
        "cargo",
        &["deb", "--version"],
        "building the Debian package",
    ) || !have("dpkg-deb", &["--version"], "unpacking the Debian package")
    {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    // The binary these tests run, not a release build (that would take
    // minutes): `--no-build` packages the dev profile's binary as it is.
    let target = Path::new(env!("CARGO_BIN_EXE_firefly"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let built = Command::new("cargo")
        .args([
            "deb",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "-p",
            "firefly",
        ])
        .arg("--output")
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cargo deb failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote no .deb");

    // What the package says about itself.
    let info = Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: firefly"), "{info}");
    assert!(
        info.contains("Depends:") && info.contains("adduser"),
        "{info}"
    );
    assert!(
        info.contains("postinst") && info.contains("postrm"),
        "{info}"
    );
    let conffiles = Command::new("dpkg-deb")
        .args(["--ctrl-tarfile"])
        .arg(&deb)
        .output()
        .unwrap();
    assert!(conffiles.status.success());

    // Unpacked into a fresh root: every file in place, and the binary runs.
    let root = tempfile::tempdir().unwrap();
    let unpacked = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(root.path())
        .status()
        .unwrap();
    assert!(unpacked.success());
    for file in PACKAGED {
        assert!(
            root.path().join(file).is_file(),
            "{file} is not in the package"
        );
    }
    // The binary is stripped: its symbols went to the separate dbgsym
    // package (an unstripped release binary is five times the size).
    let packaged = std::fs::metadata(root.path().join("usr/bin/firefly"))
        .unwrap()
        .len();
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_firefly"))
        .unwrap()
        .len();
    assert!(
        packaged * 2 < built,
        "the packaged binary ({packaged} bytes) is not stripped (built: {built} bytes)"
    );
    assert!(
        std::fs::read_dir(out_dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("firefly-dbgsym_")),
        "no dbgsym package beside the package"
    );
    let version = Command::new(root.path().join("usr/bin/firefly"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("firefly {}", env!("CARGO_PKG_VERSION"))
    );
    // The installed config is the default, and `up` accepts it.
    let config = std::fs::read_to_string(root.path().join("etc/firefly/config.toml")).unwrap();
    assert!(config.contains("#music ="));
    // The unit starts the packaged binary with the packaged config.
    let unit =
        std::fs::read_to_string(root.path().join("lib/systemd/system/firefly.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/firefly up --config /etc/firefly/config.toml"));
}
