//! `firefly up`, `relay` and `status` given bad input: one clear line and a
//! failure exit, never a panic.

use crate::util::firefly;
use std::time::Duration;

fn fails_with(args: &[&str], needle: &str) {
    let out = firefly(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "firefly {args:?} succeeded");
    assert!(
        stderr.contains(needle),
        "firefly {args:?}: expected {needle:?} in {stderr:?}"
    );
    assert!(
        !stderr.contains("panicked"),
        "firefly {args:?} panicked: {stderr}"
    );
}

#[test]
fn up_refuses_bad_flags_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let data = data.to_str().unwrap();
    let missing_key = tmp.path().join("missing.key");
    fails_with(
        &[
            "up",
            "--data-dir",
            data,
            "--swarm-key",
            missing_key.to_str().unwrap(),
        ],
        "cannot read swarm key",
    );
    let bad_key = tmp.path().join("bad.key");
    std::fs::write(&bad_key, "not a key").unwrap();
    fails_with(
        &[
            "up",
            "--data-dir",
            data,
            "--swarm-key",
            bad_key.to_str().unwrap(),
        ],
        "is not a swarm key",
    );
    fails_with(
        &[
            "up",
            "--data-dir",
            data,
            "--relay",
            "/ip4/127.0.0.1/tcp/4001",
        ],
        "must end in /p2p/",
    );
    fails_with(
        &["up", "--data-dir", data, "--peer", "not-an-address"],
        "invalid value",
    );
    fails_with(
        &["up", "--data-dir", data, "--http", "0.0.0.0:0"],
        "bind --http to 127.0.0.1",
    );
    fails_with(
        &["up", "--data-dir", data, "--name", &"n".repeat(200)],
        "node name must be at most",
    );
    std::fs::write(tmp.path().join("d").join("identity.key"), "garbage").unwrap();
    fails_with(&["up", "--data-dir", data], "is not a libp2p keypair");
}

#[test]
fn status_without_a_node_says_what_to_do() {
    // A port nothing listens on: bind one and let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    std::thread::sleep(Duration::from_millis(10));
    fails_with(&["status", "--http", &addr], "is `firefly up` running");
}
