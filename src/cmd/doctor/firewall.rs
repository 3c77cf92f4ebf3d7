//! The doctor's firewall check: does this machine's packet filter drop what
//! a node needs to be found and reached?
//!
//! A node needs mDNS (UDP 5353) in, and connections in on its swarm ports.
//! The rules are read from nftables (`nft -j list ruleset`; Debian's
//! `iptables` and `ufw` write there too). A table whose input chain drops
//! by default must accept those ports somewhere in it (its chains jump to
//! each other); a rule counts when it accepts and matches the destination
//! port for the protocol, unless it only takes packets of connections
//! already established. The verdict is a warning, not a failure: a node
//! behind such a firewall still dials out.

use super::{Check, Verdict};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde_json::{Value, json};
use std::process::Command;

/// mDNS's port.
const MDNS_PORT: u16 = 5353;

/// A port the node needs open for incoming packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Need {
    udp: bool,
    port: u16,
}

impl Need {
    fn name(self) -> String {
        format!("{}/{}", if self.udp { "udp" } else { "tcp" }, self.port)
    }
}

/// The firewall check for a node that listens on `listen` (None: the
/// default, random ports) with mDNS `mdns`.
pub(super) fn check(listen: Option<&[Multiaddr]>, mdns: bool) -> Check {
    let out = match Command::new("nft").args(["-j", "list", "ruleset"]).output() {
        Ok(out) => out,
        Err(_) => {
            return Check::new(
                "firewall",
                Verdict::Skip,
                "nftables' `nft` is not installed: no firewall rules to read",
            );
        }
    };
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Check::new(
            "firewall",
            Verdict::Skip,
            format!("cannot read the firewall rules: {}", said.trim()),
        )
        .fix("run `sudo firefly doctor` to read them");
    }
    let ruleset: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(err) => {
            return Check::new(
                "firewall",
                Verdict::Skip,
                format!("`nft -j list ruleset` printed something unreadable: {err}"),
            );
        }
    };
    judge(&ruleset, listen, mdns)
}

/// The verdict on a ruleset (`nft -j list ruleset`'s JSON).
fn judge(ruleset: &Value, listen: Option<&[Multiaddr]>, mdns: bool) -> Check {
    let items: &[Value] = ruleset["nftables"].as_array().map_or(&[], Vec::as_slice);
    // Tables (family, name) whose input chain drops by default.
    let dropping: Vec<(&str, &str)> = items
        .iter()
        .filter_map(|i| i.get("chain"))
        .filter(|c| c["hook"] == "input" && c["policy"] == "drop")
        .filter_map(|c| Some((c["family"].as_str()?, c["table"].as_str()?)))
        .collect();
    if dropping.is_empty() {
        return Check::new(
            "firewall",
            Verdict::Ok,
            "no firewall drops incoming packets by default",
        )
        .facts(json!({ "drops_by_default": false }));
    }
    let ports = listen_ports(listen);
    let random = ports.is_empty();
    let mut needs = ports.clone();
    if mdns {
        needs.push(Need {
            udp: true,
            port: MDNS_PORT,
        });
    }
    let dropped: Vec<Need> = needs
        .iter()
        .copied()
        .filter(|need| {
            // Every dropping table must let it through.
            !dropping.iter().all(|(family, table)| {
                items
                    .iter()
                    .filter_map(|i| i.get("rule"))
                    .any(|r| r["family"] == *family && r["table"] == *table && accepts(r, *need))
            })
        })
        .collect();
    let facts = json!({
        "drops_by_default": true,
        "tables": dropping.iter().map(|(f, t)| format!("{f} {t}")).collect::<Vec<_>>(),
        "random_ports": random,
        "dropped": dropped.iter().map(|n| n.name()).collect::<Vec<_>>(),
    });
    if dropped.is_empty() && !random {
        return Check::new(
            "firewall",
            Verdict::Ok,
            format!(
                "the firewall drops by default but lets {} in",
                needs
                    .iter()
                    .map(|n| n.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .facts(facts);
    }
    let mut problems = Vec::new();
    if !dropped.is_empty() {
        problems.push(format!(
            "it drops {}",
            dropped
                .iter()
                .map(|n| n.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if random {
        problems.push("the swarm listens on random ports, which it drops".to_string());
    }
    let mut fix = String::new();
    if random {
        fix.push_str(
            "give the swarm fixed ports (listen = [\"/ip4/0.0.0.0/tcp/4001\", \
             \"/ip4/0.0.0.0/udp/4001/quic-v1\"] in the config), then ",
        );
    }
    let mut allow: Vec<String> = dropped.iter().map(|n| n.name()).collect();
    if random {
        allow.extend(["tcp/4001".to_string(), "udp/4001".to_string()]);
    }
    fix.push_str(&format!(
        "allow {} in (ufw: `sudo ufw allow 5353/udp` and the like; nftables: a rule such as \
         `udp dport 5353 accept` in the input chain)",
        allow.join(", ")
    ));
    Check::new(
        "firewall",
        Verdict::Warn,
        format!(
            "the firewall drops incoming packets by default and {}: other nodes cannot find or \
             reach this one (it can still dial them)",
            problems.join("; ")
        ),
    )
    .fix(fix)
    .facts(facts)
}

/// The fixed ports in `listen`, each with its transport (empty: random).
fn listen_ports(listen: Option<&[Multiaddr]>) -> Vec<Need> {
    let mut needs = Vec::new();
    for addr in listen.unwrap_or_default() {
        for protocol in addr.iter() {
            let need = match protocol {
                Protocol::Tcp(port) => Need { udp: false, port },
                Protocol::Udp(port) => Need { udp: true, port },
                _ => continue,
            };
            if need.port != 0 && !needs.contains(&need) {
                needs.push(need);
            }
        }
    }
    needs
}

/// Whether rule `rule` accepts a new packet for `need`.
fn accepts(rule: &Value, need: Need) -> bool {
    let exprs: &[Value] = rule["expr"].as_array().map_or(&[], Vec::as_slice);
    let accept = exprs.iter().any(|e| e.get("accept").is_some());
    let mut port_matched = false;
    for m in exprs.iter().filter_map(|e| e.get("match")) {
        let left = &m["left"];
        if left["ct"]["key"] == "state" && !mentions(&m["right"], "new") {
            return false; // only established or related connections
        }
        let payload = &left["payload"];
        if payload["field"] == "dport" {
            let protocol = payload["protocol"].as_str().unwrap_or_default();
            let wanted = if need.udp { "udp" } else { "tcp" };
            if protocol != wanted && protocol != "th" {
                return false;
            }
            if m["op"] != "==" && m["op"] != "in" {
                return false;
            }
            if !covers(&m["right"], need.port) {
                return false;
            }
            port_matched = true;
        }
        if left["meta"]["key"] == "l4proto" {
            let wanted = if need.udp { "udp" } else { "tcp" };
            if !mentions(&m["right"], wanted) {
                return false;
            }
        }
    }
    accept && port_matched
}

/// Whether an nft value (a number, a set, a range) covers `port`.
fn covers(value: &Value, port: u16) -> bool {
    match value {
        Value::Number(n) => n.as_u64() == Some(u64::from(port)),
        Value::Array(items) => items.iter().any(|v| covers(v, port)),
        Value::Object(o) => {
            if let Some(set) = o.get("set") {
                covers(set, port)
            } else if let Some(range) = o.get("range").and_then(Value::as_array) {
                let bound = |i: usize| range.get(i).and_then(Value::as_u64);
                matches!((bound(0), bound(1)), (Some(lo), Some(hi)) if lo <= u64::from(port) && u64::from(port) <= hi)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Whether an nft value (a string, a list, a set) names `word`.
fn mentions(value: &Value, word: &str) -> bool {
    match value {
        Value::String(s) => s == word,
        Value::Array(items) => items.iter().any(|v| mentions(v, word)),
        Value::Object(o) => o.get("set").is_some_and(|s| mentions(s, word)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(expr: Value) -> Value {
        json!({ "rule": { "family": "inet", "table": "fw", "chain": "input", "expr": expr } })
    }

    fn ruleset(policy: &str, rules: Vec<Value>) -> Value {
        let mut items = vec![
            json!({ "table": { "family": "inet", "name": "fw" } }),
            json!({ "chain": { "family": "inet", "table": "fw", "name": "input",
                               "hook": "input", "policy": policy } }),
        ];
        items.extend(rules);
        json!({ "nftables": items })
    }

    fn dport(protocol: &str, right: Value) -> Value {
        rule(json!([
            { "match": { "op": "==", "left": { "payload": { "protocol": protocol, "field": "dport" } },
                         "right": right } },
            { "accept": null }
        ]))
    }

    fn fixed() -> Vec<Multiaddr> {
        vec![
            "/ip4/0.0.0.0/tcp/4001".parse().unwrap(),
            "/ip4/0.0.0.0/udp/4001/quic-v1".parse().unwrap(),
        ]
    }

    #[test]
    fn an_accepting_policy_is_ok() {
        let check = judge(&ruleset("accept", vec![]), None, true);
        assert_eq!(check.verdict, Verdict::Ok);
        assert_eq!(judge(&json!({}), None, true).verdict, Verdict::Ok);
    }

    #[test]
    fn a_dropping_policy_without_rules_warns_and_names_what_is_dropped() {
        let check = judge(&ruleset("drop", vec![]), Some(&fixed()), true);
        assert_eq!(check.verdict, Verdict::Warn);
        let facts = check.facts;
        assert_eq!(
            facts["dropped"],
            json!(["tcp/4001", "udp/4001", "udp/5353"])
        );
    }

    #[test]
    fn rules_that_accept_every_port_make_it_ok() {
        let rules = vec![
            dport("udp", json!(5353)),
            dport("tcp", json!({ "set": [4001, 4002] })),
            dport("th", json!({ "range": [4000, 4010] })),
        ];
        let check = judge(&ruleset("drop", rules), Some(&fixed()), true);
        assert_eq!(check.verdict, Verdict::Ok, "{:?}", check.detail);
    }

    #[test]
    fn random_ports_behind_a_dropping_policy_warn_even_with_mdns_open() {
        let check = judge(
            &ruleset("drop", vec![dport("udp", json!(5353))]),
            None,
            true,
        );
        assert_eq!(check.verdict, Verdict::Warn);
        assert_eq!(check.facts["random_ports"], true);
    }

    #[test]
    fn established_only_rules_and_other_protocols_do_not_count() {
        let established = rule(json!([
            { "match": { "op": "in", "left": { "ct": { "key": "state" } },
                         "right": ["established", "related"] } },
            { "match": { "op": "==", "left": { "payload": { "protocol": "udp", "field": "dport" } },
                         "right": 5353 } },
            { "accept": null }
        ]));
        let tcp_only = dport("tcp", json!(5353));
        let dropped = dport("udp", json!(5353))["rule"]["expr"][0].clone();
        let no_accept = rule(json!([dropped, { "drop": null }]));
        let swarm = dport("th", json!(4001));
        for r in [established, tcp_only, no_accept] {
            let check = judge(
                &ruleset("drop", vec![swarm.clone(), r]),
                Some(&fixed()),
                true,
            );
            assert_eq!(check.verdict, Verdict::Warn);
            assert_eq!(check.facts["dropped"], json!(["udp/5353"]));
        }
    }
}
