//! Runs the swarm simulator and prints its report as JSON.
//!
//! ```text
//! cargo run -p firefly-clock --release --example simulate -- \
//!     [--scenario lan|wifi|scale|jitter|stalls] [--nodes N] [--seed S] [--asymmetry-us A] [--datagrams] [--crash-at-s S --crash-node N] [--drift-wander-ppm A] [--json]
//! ```
//!
//! The same flags as `firefly bench clock`; the output is always JSON.

use firefly_clock::sim::{self, Scenario};
use std::process::ExitCode;

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Ok(scenario) => {
            let report = sim::run(&scenario);
            match serde_json::to_string_pretty(&report) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("simulate: cannot encode the report: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(msg) => {
            eprintln!("simulate: {msg}");
            eprintln!(
                "usage: simulate [--scenario lan|wifi|scale|jitter|stalls] [--nodes N] [--seed S] [--asymmetry-us A] [--datagrams] [--crash-at-s S --crash-node N] [--drift-wander-ppm A] [--json]"
            );
            ExitCode::from(2)
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Scenario, String> {
    let mut scenario = Scenario::wifi();
    let (mut nodes, mut seed, mut asym, mut datagrams) = (None, None, None, false);
    let (mut crash_at, mut crash_node, mut wander) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--scenario" => {
                let name = value("--scenario")?;
                scenario = Scenario::preset(&name).ok_or_else(|| {
                    format!("unknown scenario {name:?} (lan, wifi, scale, jitter or stalls)")
                })?;
            }
            "--nodes" => nodes = Some(number::<usize>(&value("--nodes")?, "--nodes")?),
            "--seed" => seed = Some(number::<u64>(&value("--seed")?, "--seed")?),
            "--asymmetry-us" => {
                asym = Some(number::<f64>(&value("--asymmetry-us")?, "--asymmetry-us")?)
            }
            "--crash-at-s" => {
                crash_at = Some(number::<f64>(&value("--crash-at-s")?, "--crash-at-s")?)
            }
            "--crash-node" => {
                crash_node = Some(number::<usize>(&value("--crash-node")?, "--crash-node")?)
            }
            "--drift-wander-ppm" => {
                wander = Some(number::<f64>(
                    &value("--drift-wander-ppm")?,
                    "--drift-wander-ppm",
                )?)
            }
            "--json" => {}
            "--datagrams" => datagrams = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(n) = nodes {
        if !(2..=1_000).contains(&n) {
            return Err("--nodes must be between 2 and 1000".into());
        }
        scenario.nodes = n;
    }
    if let Some(s) = seed {
        scenario.seed = s;
    }
    if let Some(a) = asym {
        if !a.is_finite() || a < 0.0 {
            return Err("--asymmetry-us must be a non-negative number".into());
        }
        scenario.asymmetry_us = a;
    }
    if let Some(at) = crash_at {
        if !at.is_finite() || at < 20.0 || at + 10.0 > scenario.duration_s {
            return Err(format!(
                "--crash-at-s must leave 20 s before it and 10 s after it ({} s run)",
                scenario.duration_s
            ));
        }
        scenario.crash_at_s = Some(at);
    }
    if let Some(node) = crash_node {
        if node >= scenario.nodes {
            return Err(format!(
                "--crash-node must be one of the {} nodes (0-based)",
                scenario.nodes
            ));
        }
        scenario.crash_node = Some(node);
    }
    if let Some(w) = wander {
        if !w.is_finite() || !(0.0..=100.0).contains(&w) {
            return Err("--drift-wander-ppm must be between 0 and 100".into());
        }
        scenario.drift_wander_ppm = w;
    }
    if datagrams {
        // Unordered links, as `firefly bench clock --datagrams`.
        scenario.ordered = false;
    }
    Ok(scenario)
}

fn number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag} expects a number, got {text:?}"))
}
