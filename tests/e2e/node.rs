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
        &[
            "up",
            "--data-dir",
            data,
            "--http",
            "0.0.0.0:0",
            "--token",
            "short",
        ],
        "the API token must be",
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

#[test]
fn up_takes_its_settings_from_the_config_file_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("music")).unwrap();
    let port = crate::playback::free_port();
    let config = tmp.path().join("config.toml");
    // Relative paths are the file's folder's; the events format comes from the file.
    std::fs::write(
        &config,
        format!(
            "name = \"from-file\"\nhttp = \"127.0.0.1:{port}\"\nmdns = false\n\
             events = \"json\"\noutput = \"null\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n\
             data_dir = \"data\"\nmusic = \"music\"\n"
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(crate::util::firefly_bin());
    command
        .args(["up", "--name", "from-flag", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error");
    let node = crate::util::Running::spawn("configured", command);
    node.wait_event("library", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no JSON events: {:?}", node.lines()));
    let (status, report) = crate::util::http(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/api/status",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        report["name"], "from-flag",
        "the flag did not win: {report}"
    );
    assert!(tmp.path().join("data").join("identity.key").is_file());
    drop(node);

    // A misspelt key stops the node with the file, the line and the key.
    std::fs::write(&config, "name = \"x\"\n\nlatency = 20\n").unwrap();
    fails_with(
        &["up", "--config", config.to_str().unwrap()],
        "line 3, key `latency`: unknown field `latency`",
    );
}
