//! The simulated network: one-way delays, jitter, spikes, asymmetry, loss,
//! and, on *ordered* links, what a TCP connection through the fault proxy
//! does: uniform jitter, stalls, loss turned into a retransmission stall, and
//! messages queueing behind a slow one.
//!
//! Seeded and sans-IO like str0m's netem: it only draws numbers. Each
//! direction of each message gets its own draw: a base delay, exponential
//! jitter, uniform jitter (`base ± uniform_jitter`, as the proxy draws it), with
//! probability `spike_prob` an extra uniform spike (Wi-Fi retransmissions,
//! power save), and on links `a → b` with `a < b` a fixed extra `asymmetry`,
//! the one error no two-way exchange can see.
//!
//! A real node talks to a peer over one connection, so its requests and
//! answers to that peer share one ordered byte stream per direction. With
//! `ordered`, each directed link keeps a release time: a message never
//! arrives before the one sent ahead of it on the same link (queueing), a
//! message sent into a stall waits for its end (and everything queued arrives
//! in a burst), and a lost message arrives `retransmit` late instead of never
//! (TCP retransmits). Stalls come at exponential gaps of mean `stall_every`,
//! per directed link, drawn from the link's own seeded stream. Without
//! `ordered` (time datagrams, as the fault proxy's UDP side forwards them)
//! a message is delayed on its own, a lost one never arrives, and a stall
//! holds each message that meets it until it clears, with no queue.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Parameters of the network model (a subset of [`super::Scenario`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Netem {
    pub(crate) base: f64,
    pub(crate) jitter_mean: f64,
    pub(crate) uniform_jitter: f64,
    pub(crate) spike_prob: f64,
    pub(crate) spike_min: f64,
    pub(crate) spike_max: f64,
    pub(crate) loss: f64,
    pub(crate) asymmetry: f64,
    pub(crate) ordered: bool,
    pub(crate) retransmit: f64,
    pub(crate) stall_every: f64,
    pub(crate) stall_for: f64,
    /// On ordered links: TCP segments a message takes (a new negotiated
    /// stream writes several: open, protocol, data, close); each is delayed
    /// on its own, and the message is there when its last one is.
    pub(crate) segments: u32,
    /// On ordered links: other messages per second sharing the link
    /// (heartbeats, gossip, flow control), each delayed on its own, ahead of
    /// which the probes must queue.
    pub(crate) background: f64,
}

impl Netem {
    /// One-way delay of a message `from → to` in µs, or `None` if it is lost.
    pub(crate) fn one_way(&self, rng: &mut ChaCha8Rng, from: usize, to: usize) -> Option<i64> {
        let lost = rng.random::<f64>() < self.loss;
        if lost && !self.ordered {
            return None;
        }
        let mut d = self.base + exponential(rng, self.jitter_mean);
        if self.uniform_jitter > 0.0 {
            d += self.uniform_jitter * (2.0 * rng.random::<f64>() - 1.0);
        }
        if self.spike_prob > 0.0 && rng.random::<f64>() < self.spike_prob {
            d += self.spike_min + rng.random::<f64>() * (self.spike_max - self.spike_min).max(0.0);
        }
        if from < to {
            d += self.asymmetry;
        }
        if lost {
            d += self.retransmit;
        }
        Some(d.max(0.0).round() as i64)
    }
}

/// State of one directed ordered link.
#[derive(Debug)]
struct Link {
    /// Arrival of the last message sent on it, µs of true time.
    last: i64,
    /// Send time of the last background message generated.
    background_at: Option<i64>,
    /// The current or next stall `[start, end)`, µs.
    stall: Option<(i64, i64)>,
    rng: ChaCha8Rng,
}

/// The network: the model plus each ordered link's queue and stalls.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) netem: Netem,
    links: BTreeMap<(usize, usize), Link>,
    seed: u64,
}

impl Network {
    pub(crate) fn new(netem: Netem, seed: u64) -> Self {
        Self {
            netem,
            links: BTreeMap::new(),
            seed,
        }
    }

    /// When a message sent `from → to` at true time `t` arrives (`extra` µs
    /// of sender-side delay on top), or `None` if it is lost.
    pub(crate) fn deliver(
        &mut self,
        rng: &mut ChaCha8Rng,
        from: usize,
        to: usize,
        t: i64,
        extra: i64,
    ) -> Option<i64> {
        let d = self.netem.one_way(rng, from, to)?;
        let arrive = t.saturating_add(d).saturating_add(extra);
        let stalls = self.netem.stall_every > 0.0 && self.netem.stall_for > 0.0;
        if !self.netem.ordered && !stalls {
            return Some(arrive);
        }
        let netem = self.netem;
        let seed = self.seed;
        let link = self.links.entry((from, to)).or_insert_with(|| Link {
            last: i64::MIN,
            background_at: None,
            stall: None,
            rng: ChaCha8Rng::seed_from_u64(
                seed ^ 0x7374_616c_6c00_0000 ^ ((from as u64) << 20) ^ to as u64,
            ),
        });
        // The other segments of this message, drawn from the link's stream.
        let spread = netem.uniform_jitter;
        let mut arrive = arrive;
        let segments = if netem.ordered { netem.segments } else { 1 };
        for _ in 1..segments.max(1) {
            let extra = spread * (2.0 * link.rng.random::<f64>() - 1.0);
            let seg = t.saturating_add((netem.base + extra).max(0.0).round() as i64);
            arrive = arrive.max(seg);
        }
        // Background messages sent before this one, queued ahead of it.
        if netem.ordered && netem.background > 0.0 {
            let gap = 1e6 / netem.background;
            let mut at = link.background_at.unwrap_or(t);
            loop {
                let next = at.saturating_add(exponential(&mut link.rng, gap).round() as i64);
                if next > t {
                    break;
                }
                at = next;
                let d = netem.base + spread * (2.0 * link.rng.random::<f64>() - 1.0);
                link.last = link.last.max(at.saturating_add(d.max(0.0).round() as i64));
            }
            link.background_at = Some(at);
        }
        // Datagrams (unordered) only wait out stalls; nothing queues.
        let mut arrive = if netem.ordered {
            arrive.max(link.last)
        } else {
            arrive
        };
        if stalls {
            loop {
                let (start, end) = *link.stall.get_or_insert_with(|| {
                    let start =
                        t.saturating_add(exponential(&mut link.rng, netem.stall_every) as i64);
                    (start, start.saturating_add(netem.stall_for as i64))
                });
                if arrive < start {
                    break;
                }
                if arrive < end {
                    // Held: it leaves with the burst when the stall clears.
                    arrive = end;
                    break;
                }
                // That stall is over; plan the next one after it.
                let next = end.saturating_add(exponential(&mut link.rng, netem.stall_every) as i64);
                link.stall = Some((next, next.saturating_add(netem.stall_for as i64)));
            }
        }
        if netem.ordered {
            link.last = arrive;
        }
        Some(arrive)
    }
}

/// Exponential draw with the given mean (inverse CDF).
pub(crate) fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    -mean * (1.0 - rng.random::<f64>()).ln()
}
