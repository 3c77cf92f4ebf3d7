//! The swarm clock: this node's mapping from local time onto the shared
//! timeline, kept in step with its peers by firefly coupling.
//!
//! [`SwarmClock`] owns one estimator window per peer and, every tick, nudges
//! its own mapping `swarm = anchor + (local − anchor) × (1 + skew)` a fraction
//! of the way toward the inverse-variance weighted consensus of its peers'
//! timelines. Nobody is the reference. Two loops do the nudging:
//!
//! - **rate**: the skew follows the peers' measured rates through a scalar
//!   Kalman-style filter (large gain while this node's own rate is uncertain,
//!   a small floor once settled);
//! - **phase**: the remaining offset is slewed away (a bounded rate offset,
//!   never a jump) by a PI loop whose gain is high right after a step or
//!   while the error clearly stands out of the estimates' noise, and low once
//!   settled, so a settled swarm averages noise instead of chasing it.
//!
//! Acquisition and partitions are handled by two rules that only ever move a
//! timeline toward the largest group of agreeing clocks or forward:
//! an *unsynced* node (fresh start, joiner) adopts, in one step, the largest
//! cluster of peer timelines that agree within [`crate::Config::outlier`]
//! (ties: the one furthest ahead, itself included, so a swarm booting together
//! converges on its latest clock in one round); a *synced* node ignores peers
//! far from it (a joiner still acquiring), unless they stay *proven* ahead
//! (beyond 3σ and beyond half their smallest round trip, what the samples
//! can prove under jitter) for [`crate::Config::adopt_after`] and do not say
//! they are still acquiring, and at least as many peers hold that timeline
//! as agree with this node, then it steps forward to them. Peers nearer than
//! that proof are averaged with, so a wobbling estimate is slewed to, never
//! stepped to. A joiner that has synced is not averaged with until it has
//! settled (see [`YOUNG_FOR`]): averaging keeps the mean, so its
//! acquisition error would move everyone. So a joiner never pulls the
//! swarm, one peer whose clock jumped never drags the rest, and a crash
//! removes one term of an average that already agrees. A synced node's
//! swarm time runs backward in one case only: it is alone (or in the
//! smaller group) ahead of a larger group that agrees, e.g. its own clock
//! jumped; then it steps back to them.
//!
//! Probing adapts (as NTP and chrony lengthen their poll): a peer whose
//! estimate is better than [`crate::Config::probe_target`] is probed less
//! often, up to [`crate::Config::max_probe_interval`].

use crate::config::Config;
use crate::estimator::{Estimate, Insert, PeerEstimator, PeerLocal, Sample, SampleError};
use crate::time::{LocalMicros, SwarmMicros};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

/// Something the node's owner may want to know. Drained by [`SwarmClock::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<P> {
    /// The node now follows the swarm's timeline (after acquisition, or alone
    /// after [`Config::solo_after`] with no peer). Playback may start.
    Synced,
    /// The timeline was stepped (acquisition, or adopting a timeline that stayed
    /// ahead: a healed partition). Anything scheduled in swarm time must be
    /// re-read. Positive: swarm time jumped forward.
    Stepped {
        /// Size of the step, µs.
        by_micros: i64,
    },
    /// A peer's clock jumped; its window was restarted.
    PeerJumped {
        /// The peer.
        peer: P,
    },
}

/// What this node knows about one peer, as of the last tick (for the UI).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PeerInfo {
    /// Peer's swarm clock minus ours, µs (`None` until enough samples).
    pub offset_micros: Option<f64>,
    /// Smallest round trip in the window, µs.
    pub delay_micros: Option<f64>,
    /// One-sigma uncertainty of the offset, µs.
    pub uncertainty_micros: Option<f64>,
    /// Rate of the peer's swarm clock against ours, ppm.
    pub rate_ppm: Option<f64>,
    /// Samples in the window.
    pub samples: usize,
    /// Whether this node probes the peer (at most [`Config::max_sync_peers`]).
    pub probed: bool,
    /// Whether the peer's timeline was averaged with at the last tick.
    pub coupled: bool,
    /// The exchange's one-way asymmetry towards this peer, µs, learned from
    /// what the peer measures of us (see [`SwarmClock::handle_peer_view`]) and
    /// already removed from `offset_micros`. `None` until the peer has told us.
    pub path_bias_micros: Option<f64>,
}

/// What a node tells the peers that ask it the time, beside the stamps
/// (see [`SwarmClock::view_for`] and [`SwarmClock::handle_peer_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PeerView {
    /// Its raw measurement of the asker's swarm clock minus its own, µs
    /// (`None` until it has one).
    pub offset_micros: Option<f64>,
    /// Its swarm clock's drift compensation against its own local clock
    /// (dimensionless, e.g. `120e-6`), without any slew in progress.
    pub skew: f64,
    /// It has not synced yet (a joiner still acquiring): its timeline is
    /// no one's to follow. `false` for peers that do not say.
    pub unsynced: bool,
    /// Its raw measurement of the asker's timeline rate minus its own
    /// (dimensionless, drift compensations only, no slew), from its window
    /// alone (`None` until it has one, and from peers that do not say).
    pub rate: Option<f64>,
    /// How long it has been synced, µs (`None` while unsynced, and from
    /// peers that do not say: those count as long synced). The rate anchor
    /// bends fast only while every member is young (see `anchor_bend`).
    pub synced_for_micros: Option<i64>,
}

/// Counters of what happened to samples (bad input is counted here).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Samples taken into a window.
    pub accepted: u64,
    /// Samples refused (see [`SampleError`]).
    pub rejected: u64,
    /// Windows shrunk because a peer changed its rate.
    pub shrinks: u64,
    /// Peer clock jumps detected (windows restarted).
    pub jumps: u64,
    /// Steps of this node's own timeline.
    pub steps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Free-running; `first_ready` is when a peer estimate first became usable.
    Unsynced {
        first_ready: Option<i64>,
    },
    Synced,
}

#[derive(Debug)]
struct Peer {
    estimator: PeerEstimator,
    probed: bool,
    info: PeerInfo,
    /// Our raw (uncorrected) measurement of the peer's offset at the last tick:
    /// what we tell the peer when it asks the time.
    measured: Option<f64>,
    /// The peer's raw measurement of *our* offset, and our local time when it came.
    reported: Option<(i64, f64)>,
    /// The peer's drift compensation, and our local time when it came.
    reported_skew: Option<(i64, f64)>,
    /// The peer said, with its latest view, that it is not synced yet.
    reported_unsynced: bool,
    /// Our raw measurement of the peer's timeline rate minus ours at the
    /// last tick (its window alone): what we tell the peer.
    measured_rate: Option<f64>,
    /// The peer's raw measurement of our timeline rate minus its own, and
    /// our local time when it came.
    reported_rate: Option<(i64, f64)>,
    /// How long the peer had been synced, and our local time when it said so.
    reported_synced_for: Option<(i64, i64)>,

    /// The latest path-bias measurements (see [`PeerInfo::path_bias_micros`]).
    bias_samples: VecDeque<f64>,
    /// Their median: the bias removed from the peer's offset at a tick whose
    /// own measurement is out of bounds (see `tick`).
    bias: Option<f64>,
    /// Time between probes of this peer now: [`Config::probe_interval`]
    /// until its estimate is good, then longer (see `adapt_probing`).
    interval: i64,
    /// The peer's swarm mapping from its newest sample with local stamps
    /// (see [`PeerLocal`]).
    mapping: Option<Mapping>,
}

/// A peer's swarm clock as a function of its local clock, as its newest
/// answer stated it: `swarm(l) = swarm_at + (l − local_at)(1 + rate)`.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    /// Our local time when the answer arrived (the newest answer wins).
    received: i64,
    local_at: i64,
    swarm_at: i64,
    rate: f64,
}

impl Mapping {
    /// The peer's swarm clock minus our local clock at our local instant
    /// `now`, given its local clock minus ours there (`theta`), µs.
    fn swarm_theta(&self, now: i64, theta: f64) -> f64 {
        let own = self.swarm_at.saturating_sub(self.local_at) as f64;
        let since = now.saturating_sub(self.local_at) as f64 + theta;
        own + theta + self.rate * since
    }
}

/// Path-bias measurements kept per peer. Each tick removes its own
/// measurement, so that the pair's two views cancel; their median stands in
/// for a tick whose measurement is out of bounds (around a step on either
/// side, where a single one is wrong).
const BIAS_SAMPLES: usize = 63;
/// Fraction of the members' median drift compensation the rate anchor
/// removes per tick, on every node alike, before [`ANCHOR_BEND`] bounds it
/// (see [`SwarmClock::handle_peer_view`]).
const ANCHOR_GAIN: f64 = 0.05;
/// Fastest change of the swarm's rate the anchor makes in a settled swarm,
/// per second: a crash or a joiner moves the members' median at once, and
/// bending toward it at this rate moves the timeline by about
/// `½ · bend · t²` (2.5 µs over 10 s), however far the median moved.
const ANCHOR_BEND: f64 = 0.05e-6;

/// While the swarm boots, the anchor bends up to this fast, per second:
/// the timeline a booting swarm adopts runs at one node's crystal, up to a
/// few hundred ppm from the members' median, and [`ANCHOR_BEND`] would
/// take hours to remove that. Nobody can be playing in step yet, and every
/// node makes the same move.
const ANCHOR_BEND_BOOT: f64 = 20e-6;
/// While the swarm boots, the fraction of the members' median drift
/// compensation the anchor removes per tick (before [`ANCHOR_BEND_BOOT`]
/// bounds it): fast enough that the bend is over before the swarm's first
/// 20 s are, so a joiner soon after boot meets a timeline on a straight
/// course.
const ANCHOR_GAIN_BOOT: f64 = 0.1;
/// The swarm boots until its oldest member has been synced this long, µs.
const ANCHOR_BOOT: i64 = 60_000_000;
/// A member arriving or leaving once the oldest member has been synced this
/// long ends the boot (a joiner or a crash, not the swarm starting up), µs.
const ANCHOR_BOOT_MEMBERS: i64 = 20_000_000;

/// One usable peer estimate at a tick.
#[derive(Debug, Clone, Copy)]
struct View {
    /// Peer swarm minus our swarm at `now`, µs.
    offset: f64,
    sigma: f64,
    /// Peer swarm rate against our local clock, minus one.
    rate: f64,
    rate_sigma: f64,
    /// The window's own rate measurement (no prior), for the rate filter.
    measured_rate: f64,
    measured_rate_sigma: f64,
    /// How far the peer's clock may be from `offset` whatever the jitter
    /// did to the estimate: half the smallest round trip (its samples prove
    /// no more). Under heavy jitter this is tens of ms, on a LAN a fraction
    /// of one.
    bound: f64,
    /// The peer said it is still acquiring.
    unsynced: bool,
    /// The peer synced recently, long after this node did (a joiner still
    /// settling onto the swarm): its error is its own, not the swarm's, so
    /// it is not averaged with (see [`YOUNG_FOR`]).
    young: bool,
}

/// A peer that synced less than this long ago, while this node has been
/// synced at least [`YOUNG_MARGIN`] longer, is a joiner still settling: a
/// synced node does not average with it. Its acquisition error (tens of µs
/// on a clean link, hundreds under jitter) is its own; averaging with it
/// moves every settled node toward it, and consensus averaging keeps the
/// mean, so a joiner pulled the swarm by about its error over the members
/// until it had converged. The joiner follows the others meanwhile, so it
/// converges as fast as before, and the swarm does not move. µs.
const YOUNG_FOR: i64 = 30_000_000;
/// How much longer this node must have been synced than a peer for the
/// peer to count as young, µs: nodes booting together sync within a few
/// seconds of each other and must average with each other.
const YOUNG_MARGIN: i64 = 10_000_000;

/// This node's swarm clock. Sans-IO: the caller owns time and the network.
///
/// # Driving it
///
/// Every method that changes state takes `now`, the node's local monotonic
/// time; `now` must never go backwards (an earlier `now` is treated as the
/// latest one seen). After any input, drain in this order:
///
/// 1. [`SwarmClock::handle_timeout`]`(now)` when the time from
///    [`SwarmClock::poll_timeout`] has come;
/// 2. [`SwarmClock::poll_probe`]`(now)` until `None`: send one `/firefly/time/2`
///    request to each peer returned;
/// 3. [`SwarmClock::poll_event`] until `None`;
/// 4. [`SwarmClock::poll_timeout`] to re-arm the timer.
///
/// # The exchange
///
/// Stamp `t1 = now` (local) as the request leaves. The peer answers with
/// `t2 = to_swarm(its now)` when the request arrives and `t3 = to_swarm(its
/// now)` as the reply leaves: **its swarm clock**, even while it is unsynced.
/// Stamp `t4 = now` (local) on arrival and feed
/// [`SwarmClock::handle_sample`]`(now, peer, Sample { t1, t2, t3, t4 })`. A lost
/// or timed-out exchange is simply never fed. Local stamps on our side make
/// every sample immune to our own corrections, so the windows stay linear.
///
/// # Membership
///
/// [`SwarmClock::add_peer`] / [`SwarmClock::remove_peer`] follow the swarm's
/// membership; the clock probes at most [`Config::max_sync_peers`] of them,
/// chosen at random, and replaces a removed one.
#[derive(Debug)]
pub struct SwarmClock<P> {
    config: Config,
    /// `swarm(L) = anchor_swarm + anchor_frac + (L − anchor_local)(1 + rate_base + rate_slew)`.
    anchor_local: i64,
    anchor_swarm: i64,
    /// Sub-microsecond part of the anchor, in [0, 1): re-anchoring every tick
    /// must not accumulate rounding.
    anchor_frac: f64,
    rate_base: f64,
    rate_slew: f64,
    state: State,
    peers: BTreeMap<P, Peer>,
    /// The peers with `probed` set and when each is due next, so timers need
    /// not walk every member.
    probed: Vec<(P, i64)>,
    rng: ChaCha8Rng,
    created: i64,
    last_now: i64,
    next_tick: i64,
    far_ahead_since: Option<i64>,
    /// Variance of `rate_base` as an estimate of the peers' rate. It sets the
    /// rate gain (a scalar Kalman filter floored at `rate_gain`): a fresh
    /// timeline takes each better measurement almost whole, a settled one
    /// filters noise.
    rate_var: f64,
    /// Local time this node synced (see [`PeerView::synced_for_micros`]).
    synced_at: Option<i64>,
    /// Every peer whose drift compensation the anchor's median has taken
    /// (a peer that falls silent for a while and comes back is no newcomer).
    anchor_seen: BTreeSet<P>,
    /// Local time the oldest member synced, as of the last tick.
    oldest_synced_at: Option<i64>,
    /// The swarm's boot is over for the anchor (see `anchor_bend`); never
    /// cleared.
    booted: bool,
    /// Local time of the last step: the phase gain decays from
    /// `phase_gain_acquire` to `phase_gain` after it.
    stepped_at: i64,

    sync_error: Option<f64>,
    events: VecDeque<Event<P>>,
    stats: Stats,
}

impl<P: Clone + Ord + Hash + Debug> SwarmClock<P> {
    /// A fresh, unsynced clock reading `initial` at local time `now`.
    ///
    /// Until it syncs, the node serves `initial + (local − now)` to peers. Pick
    /// `initial` so that independent nodes start near each other (wall-clock
    /// microseconds since the UNIX epoch is a good choice): samples further
    /// than [`Config::max_offset`] from our timeline are refused.
    pub fn new(config: Config, now: LocalMicros, initial: SwarmMicros) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        // Clocks differ by a few hundred ppm: that is what is known of the
        // swarm's rate before any measurement.
        let rate_var = config.estimator.rate_prior_sigma.powi(2);
        Self {
            next_tick: now.0.saturating_add(config.tick_interval),
            config,
            anchor_local: now.0,
            anchor_swarm: initial.0,
            anchor_frac: 0.0,
            rate_base: 0.0,
            rate_slew: 0.0,
            state: State::Unsynced { first_ready: None },
            peers: BTreeMap::new(),
            probed: Vec::new(),
            rng,
            created: now.0,
            last_now: now.0,
            far_ahead_since: None,
            rate_var,
            stepped_at: now.0,
            synced_at: None,
            anchor_seen: BTreeSet::new(),
            oldest_synced_at: None,
            booted: false,
            sync_error: None,
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    // ----- getters -----

    /// Swarm time at local instant `local`, by the current mapping (exact for
    /// instants since the last `handle_*` call; earlier ones use today's rate).
    pub fn to_swarm(&self, local: LocalMicros) -> SwarmMicros {
        let dl = local.0.saturating_sub(self.anchor_local);
        let frac = self.anchor_frac + dl as f64 * self.rate();
        // `as` saturates on overflow and maps NaN to 0; rate is finite (clamped).
        SwarmMicros(
            self.anchor_swarm
                .saturating_add(dl)
                .saturating_add(frac.floor() as i64),
        )
    }

    /// Local instant at which the swarm clock reads `swarm` (current mapping).
    pub fn to_local(&self, swarm: SwarmMicros) -> LocalMicros {
        let ds = swarm.0.saturating_sub(self.anchor_swarm) as f64 - self.anchor_frac;
        let dl = ds / (1.0 + self.rate());
        LocalMicros(self.anchor_local.saturating_add(dl.round() as i64))
    }

    /// Whether the node follows the swarm's timeline (see [`Event::Synced`]).
    pub fn is_synced(&self) -> bool {
        self.state == State::Synced
    }

    /// Current rate of the swarm clock against the local clock, ppm (drift
    /// compensation plus any slew in progress).
    pub fn skew_ppm(&self) -> f64 {
        self.rate() * 1e6
    }

    /// This node's drift compensation, ppm: the swarm clock's rate against
    /// the local clock without the phase slew in progress (see
    /// [`SwarmClock::slew_ppm`]; the two add up to [`SwarmClock::skew_ppm`]
    /// within the skew bound).
    pub fn drift_compensation_ppm(&self) -> f64 {
        self.rate_base * 1e6
    }

    /// The rate offset slewing this node's phase toward its peers now, ppm.
    pub fn slew_ppm(&self) -> f64 {
        self.rate_slew * 1e6
    }

    /// Estimated distance of this node's timeline from its peers' consensus at
    /// the last tick, µs (one sigma, including the estimate's own noise).
    /// `None` while unsynced or with no usable peer.
    pub fn sync_error_micros(&self) -> Option<f64> {
        self.sync_error
    }

    /// What is known about `peer` (see [`PeerInfo`]).
    pub fn peer(&self, peer: &P) -> Option<&PeerInfo> {
        self.peers.get(peer).map(|p| &p.info)
    }

    /// Every member peer and what is known about it, in key order.
    pub fn peers(&self) -> impl Iterator<Item = (&P, &PeerInfo)> {
        self.peers.iter().map(|(k, p)| (k, &p.info))
    }

    /// What to send `peer` with a time response, for its
    /// [`SwarmClock::handle_peer_view`]: our raw measurement of its swarm
    /// clock minus ours at the last tick (before any bias correction) and our
    /// drift compensation.
    pub fn view_for(&self, peer: &P) -> PeerView {
        PeerView {
            offset_micros: self.peers.get(peer).and_then(|p| p.measured),
            skew: self.rate_base,
            unsynced: !self.is_synced(),
            rate: self.peers.get(peer).and_then(|p| p.measured_rate),
            synced_for_micros: self
                .synced_at
                .map(|at| self.last_now.saturating_sub(at).max(0)),
        }
    }

    /// Sample counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- commands -----

    /// A peer joined the swarm. Idempotent.
    pub fn add_peer(&mut self, now: LocalMicros, peer: P) {
        let now = self.advance(now);
        if !self.peers.contains_key(&peer) {
            let mut estimator = PeerEstimator::new();
            estimator.set_rate_prior(self.rate());
            self.peers.insert(
                peer.clone(),
                Peer {
                    estimator,
                    probed: false,
                    info: PeerInfo::default(),
                    measured: None,
                    reported: None,
                    reported_skew: None,
                    reported_unsynced: false,
                    measured_rate: None,
                    reported_rate: None,
                    reported_synced_for: None,
                    bias_samples: VecDeque::new(),
                    bias: None,
                    interval: self.config.probe_interval,
                    mapping: None,
                },
            );
            self.select_peers(now, Some(&peer));
        }
    }

    /// A peer left (or was declared dead). Its samples are dropped at once,
    /// so it leaves the consensus; another peer is probed in its place.
    pub fn remove_peer(&mut self, now: LocalMicros, peer: &P) {
        let now = self.advance(now);
        if self.peers.remove(peer).is_some() {
            // A member leaving after the swarm's first moments is a crash
            // or a departure, which must only bend the timeline gently.
            if self
                .oldest_synced_at
                .is_some_and(|at| now.saturating_sub(at) >= ANCHOR_BOOT_MEMBERS)
            {
                self.booted = true;
            }
            self.anchor_seen.remove(peer);
            self.probed.retain(|(k, _)| k != peer);
            self.select_peers(now, None);
        }
    }

    // ----- inputs -----

    /// Feeds one exchange with `peer` (see the type doc for which clock each
    /// stamp comes from). Bad samples are refused, counted, and change nothing.
    pub fn handle_sample(
        &mut self,
        now: LocalMicros,
        peer: &P,
        sample: Sample,
    ) -> Result<(), SampleError> {
        self.handle_exchange(now, peer, sample, None)
    }

    /// Like [`SwarmClock::handle_sample`], with the peer's local stamps of
    /// the same exchange and its swarm mapping when it sends them
    /// ([`PeerLocal`]; `None` is `handle_sample`). The peer's window then
    /// fits its local clock, which is linear, instead of its swarm clock,
    /// which every correction bends; its swarm time is read through the
    /// mapping of its newest answer.
    pub fn handle_exchange(
        &mut self,
        now: LocalMicros,
        peer: &P,
        sample: Sample,
        local: Option<PeerLocal>,
    ) -> Result<(), SampleError> {
        let now = self.advance(now);
        let result = self.check_and_insert(now, peer, &sample, local.as_ref());
        match &result {
            Ok(()) => self.stats.accepted += 1,
            Err(_) => self.stats.rejected += 1,
        }
        result
    }

    /// Feeds what `peer` said of itself and of us with a time response
    /// (its [`SwarmClock::view_for`] us). Two errors no comparison of clocks
    /// can see are removed with it:
    ///
    /// - **Path bias.** An exchange whose request takes longer than its
    ///   response (a new stream is opened for the request, the response rides
    ///   an open one) makes each side see the other ahead by the same amount.
    ///   Our measurement of the peer plus its measurement of us is twice that
    ///   shared bias. Sums beyond half the smallest round trip are dropped
    ///   (no path is more lopsided: one side stepped between the two views,
    ///   or the peer lies, and that is all a lying peer can shift). Each
    ///   tick subtracts its own sum, from acquisition on, so our view of the
    ///   peer is minus its view of us: a pair's two views cancel every tick.
    ///   (The median of the latest sums lagged and, on the skewed sums of a
    ///   jittery path, was not their mean: each pair's views then summed to
    ///   +20…+110 µs, which a third member balanced, and a member leaving
    ///   left unbalanced, so both survivors slewed the same way.) A tick
    ///   whose sum is out of bounds subtracts the median of the latest ones.
    /// - **Common drift.** Peers only compare clocks with each other, so
    ///   nothing holds the swarm's rate as a whole: any shared error would
    ///   let every timeline speed up or slow down together, away from real
    ///   time and out of the players' slew range. The peers' drift
    ///   compensations anchor it: the median of the members' (its own and
    ///   its synced peers') is how far the timeline runs from the members'
    ///   median clock, and each node removes a little of it every tick. All
    ///   nodes make the same move, so their agreement is untouched. The
    ///   move is bounded in ppm per second ([`ANCHOR_BEND`]): a crash or a
    ///   joiner moves the median at once, and a bounded bend moves the
    ///   timeline by microseconds, never a step. While the swarm boots
    ///   (every member synced for less than a minute, and no member arrived
    ///   or left after its first 20 s; peers say how long they have been
    ///   synced) the bound is [`ANCHOR_BEND_BOOT`]: the timeline a booting
    ///   swarm adopts runs at one node's crystal, and only a fast bend
    ///   brings it to the median before anyone plays.
    /// - **Shared rate error.** The same for rates: our window's rate of the
    ///   peer against ours plus its window's rate of us against its own is
    ///   twice the error the two share (the true rates cancel); half of it
    ///   is removed from what feeds the rate filter. Without that, every
    ///   node's filter took in the same early errors and the swarm's common
    ///   rate ran hundreds of ppm off. A shared error beyond three sigmas
    ///   of the window's rate is not used.
    ///
    /// A view out of range is refused and counted.
    pub fn handle_peer_view(
        &mut self,
        now: LocalMicros,
        peer: &P,
        view: PeerView,
    ) -> Result<(), SampleError> {
        let now = self.advance(now);
        let max = self.config.max_offset as f64;
        let max_skew = self.config.max_skew;
        let result = match (self.peers.get_mut(peer), view.offset_micros) {
            (None, _) => Err(SampleError::UnknownPeer),
            (Some(_), Some(offset)) if !offset.is_finite() || offset.abs() > max => {
                Err(SampleError::OffsetTooLarge {
                    offset_micros: if offset.is_finite() {
                        offset as i64
                    } else {
                        i64::MAX
                    },
                })
            }
            (Some(_), _) if !view.skew.is_finite() || view.skew.abs() > max_skew => {
                Err(SampleError::SkewOutOfRange)
            }
            (Some(_), _)
                if view
                    .rate
                    .is_some_and(|r| !r.is_finite() || r.abs() > 2.0 * max_skew) =>
            {
                Err(SampleError::SkewOutOfRange)
            }
            (Some(p), offset) => {
                if let Some(offset) = offset {
                    p.reported = Some((now, offset));
                }
                p.reported_skew = Some((now, view.skew));
                p.reported_unsynced = view.unsynced;
                if let Some(rate) = view.rate {
                    p.reported_rate = Some((now, rate));
                }
                // A negative age is nonsense: count it as long synced.
                p.reported_synced_for = view
                    .synced_for_micros
                    .map(|age| (now, if age < 0 { i64::MAX } else { age }));
                Ok(())
            }
        };
        if result.is_err() {
            self.stats.rejected += 1;
        }
        result
    }

    fn check_and_insert(
        &mut self,
        now: i64,
        peer: &P,
        s: &Sample,
        local: Option<&PeerLocal>,
    ) -> Result<(), SampleError> {
        if !self.peers.contains_key(peer) {
            return Err(SampleError::UnknownPeer);
        }
        if let Some(l) = local {
            if l.t3 < l.t2 {
                return Err(SampleError::NegativeTurnaround);
            }
            if l.t3.0.saturating_sub(l.t2.0) > self.config.max_delay {
                return Err(SampleError::DelayTooLarge {
                    delay_micros: l.t3.0.saturating_sub(l.t2.0),
                });
            }
            // Its full rate (drift compensation plus slew) stays within
            // twice the largest skew.
            let max_ppb = (2.0 * self.config.max_skew * 1e9) as i64;
            if l.rate_ppb.saturating_abs() > max_ppb {
                return Err(SampleError::SkewOutOfRange);
            }
        }
        if s.t4 < s.t1 {
            return Err(SampleError::Reversed);
        }
        if s.t3 < s.t2 {
            return Err(SampleError::NegativeTurnaround);
        }
        if s.t4.0 > now {
            return Err(SampleError::FromTheFuture);
        }
        let round_trip = s.t4.0.saturating_sub(s.t1.0);
        let turnaround = s.t3.0.saturating_sub(s.t2.0);
        if round_trip > self.config.max_delay || turnaround > self.config.max_delay {
            return Err(SampleError::DelayTooLarge {
                delay_micros: round_trip.max(turnaround),
            });
        }
        let delay = s.delay_micros();
        // Rate differences let an honest zero-delay exchange come out a hair
        // negative; more than that means the stamps are inconsistent.
        let slack = 2 + turnaround / 500;
        if delay < -slack {
            return Err(SampleError::NegativeDelay {
                delay_micros: delay,
            });
        }
        let ours = self.to_swarm(s.t1).0.saturating_sub(s.t1.0);
        let offset = s.offset_micros().saturating_sub(ours);
        if offset.saturating_abs() > self.config.max_offset {
            return Err(SampleError::OffsetTooLarge {
                offset_micros: offset,
            });
        }
        if s.t1.0 < now.saturating_sub(self.config.estimator.max_age) {
            return Err(SampleError::Stale);
        }
        let cfg = self.config.estimator.clone();
        let base_interval = self.config.probe_interval;
        let entry = self.peers.get_mut(peer).ok_or(SampleError::UnknownPeer)?;
        let outcome = entry.estimator.insert(s, local, &cfg)?;
        if let Some(l) = local
            && outcome != Insert::Held
            && entry.mapping.is_none_or(|m| m.received <= s.t4.0)
        {
            entry.mapping = Some(Mapping {
                received: s.t4.0,
                local_at: l.t3.0,
                swarm_at: s.t3.0,
                rate: l.rate_ppb as f64 * 1e-9,
            });
        }
        if matches!(outcome, Insert::Shrunk | Insert::Reset) {
            // The window lost samples: gather new ones fast again.
            entry.interval = base_interval;
        }
        match outcome {
            Insert::Added | Insert::Held => {}
            Insert::Shrunk => self.stats.shrinks += 1,
            Insert::Reset => {
                self.stats.jumps += 1;
                self.events
                    .push_back(Event::PeerJumped { peer: peer.clone() });
            }
        }
        Ok(())
    }

    /// Runs the coupling step if its time has come (see [`SwarmClock::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: LocalMicros) {
        let now = self.advance(now);
        if now >= self.next_tick {
            self.tick(now);
            self.next_tick = self.next_tick.saturating_add(self.config.tick_interval);
            if self.next_tick <= now {
                self.next_tick = now.saturating_add(self.config.tick_interval);
            }
        }
    }

    // ----- outputs -----

    /// The next peer to send a time request to, if one is due at `now`.
    pub fn poll_probe(&mut self, now: LocalMicros) -> Option<P> {
        let now = self.advance(now);
        let (key, next) = self.probed.iter_mut().find(|(_, next)| *next <= now)?;
        let interval = self
            .peers
            .get(key)
            .map_or(self.config.probe_interval, |p| p.interval);
        *next = next.saturating_add(interval);
        if *next <= now {
            *next = now.saturating_add(interval);
        }
        Some(key.clone())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When to call [`SwarmClock::handle_timeout`] and [`SwarmClock::poll_probe`] next.
    pub fn poll_timeout(&self) -> Option<LocalMicros> {
        let probe = self.probed.iter().map(|(_, next)| *next).min();
        Some(LocalMicros(
            probe.map_or(self.next_tick, |p| p.min(self.next_tick)),
        ))
    }

    // ----- internals -----

    fn advance(&mut self, now: LocalMicros) -> i64 {
        self.last_now = self.last_now.max(now.0);
        self.last_now
    }

    fn rate(&self) -> f64 {
        (self.rate_base + self.rate_slew).clamp(-self.config.max_skew, self.config.max_skew)
    }

    /// Our swarm minus local at `now`, µs (fractional).
    fn offset_at(&self, now: i64) -> f64 {
        let dl = now.saturating_sub(self.anchor_local);
        self.anchor_swarm.saturating_sub(self.anchor_local) as f64
            + self.anchor_frac
            + dl as f64 * self.rate()
    }

    /// Moves the anchor to `now` without changing the mapping's value there.
    fn reanchor(&mut self, now: i64) {
        let dl = now.saturating_sub(self.anchor_local);
        let frac = self.anchor_frac + dl as f64 * self.rate();
        let whole = frac.floor();
        self.anchor_swarm = self
            .anchor_swarm
            .saturating_add(dl)
            .saturating_add(whole as i64);
        self.anchor_frac = frac - whole;
        self.anchor_local = now;
    }

    fn step(&mut self, now: i64, by: f64) {
        self.reanchor(now);
        let total = self.anchor_frac + by;
        let whole = total.floor();
        self.anchor_swarm = self.anchor_swarm.saturating_add(whole as i64);
        self.anchor_frac = total - whole;
        self.stats.steps += 1;
        self.stepped_at = now;
        self.events.push_back(Event::Stepped {
            by_micros: by.round() as i64,
        });
    }

    /// Keeps up to `max_sync_peers` peers probed, each member equally likely
    /// whatever order they arrived in (reservoir sampling: a newcomer replaces
    /// a random probed peer with probability `max / members`).
    fn select_peers(&mut self, now: i64, newcomer: Option<&P>) {
        let max = self.config.max_sync_peers;
        if let Some(new) = newcomer.filter(|_| self.probed.len() >= max) {
            let members = self.peers.len();
            if self.rng.random_range(0..members) < max {
                let (victim, _) = self
                    .probed
                    .swap_remove(self.rng.random_range(0..self.probed.len()));
                if let Some(p) = self.peers.get_mut(&victim) {
                    p.probed = false;
                    p.info.probed = false;
                    p.estimator = PeerEstimator::new();
                }
                self.probe(now, new);
            }
            return;
        }
        let mut missing = max.saturating_sub(self.probed.len());
        while missing > 0 {
            let candidates: Vec<&P> = self
                .peers
                .iter()
                .filter(|(_, p)| !p.probed)
                .map(|(k, _)| k)
                .collect();
            if candidates.is_empty() {
                break;
            }
            let key = candidates[self.rng.random_range(0..candidates.len())].clone();
            self.probe(now, &key);
            missing -= 1;
        }
    }

    fn probe(&mut self, now: i64, key: &P) {
        let phase = self.rng.random_range(0..self.config.probe_interval.max(1));
        if let Some(p) = self.peers.get_mut(key)
            && !p.probed
        {
            p.probed = true;
            p.info.probed = true;
            self.probed.push((key.clone(), now.saturating_add(phase)));
        }
    }

    fn tick(&mut self, now: i64) {
        let ours = self.offset_at(now);
        let cfg = self.config.estimator.clone();
        let mut views: Vec<View> = Vec::new();
        let mut heard_any = false;
        let my_rate = self.rate();
        let synced = self.state == State::Synced;
        let my_age = self.synced_at.map(|at| now.saturating_sub(at));
        for peer in self.peers.values_mut() {
            heard_any |= peer.estimator.len() > 0;
            // A window of local stamps fits the peer's crystal against ours:
            // both timelines run at one rate, so expect the difference of
            // the two drift compensations.
            let peer_skew = peer
                .reported_skew
                .map(|(_, skew)| skew)
                .or(peer.mapping.map(|m| m.rate));
            let local_window = peer.estimator.is_local() && peer.mapping.is_some();
            if local_window {
                peer.estimator
                    .set_rate_prior(self.rate_base - peer_skew.unwrap_or(0.0));
            } else {
                peer.estimator.set_rate_prior(self.rate_base);
            }
            peer.info.coupled = false;
            peer.info.samples = peer.estimator.len();
            let fresh = peer
                .estimator
                .newest()
                .is_some_and(|t| now.saturating_sub(t.0) <= self.config.stale_after);
            let est: Option<Estimate> = if peer.estimator.len() >= self.config.min_samples {
                peer.estimator.estimate(&cfg)
            } else {
                None
            };
            match est {
                Some(e) => {
                    let at = LocalMicros(now);
                    // The peer's swarm clock minus our local one at `now`,
                    // and its timeline's rate (without slew) against ours.
                    let (theta, rate_shift) = match peer.mapping.filter(|_| local_window) {
                        Some(m) => (
                            m.swarm_theta(now, e.theta_at(at)),
                            peer_skew.unwrap_or(m.rate),
                        ),
                        None => (e.theta_at(at), 0.0),
                    };
                    let measured = theta - ours;
                    peer.measured = measured.is_finite().then_some(measured);
                    // This tick's bias when its measurement is in bounds
                    // (the pair's views then cancel), else the median.
                    let mut pair_bias = None;
                    if let Some((_, reported)) = peer
                        .reported
                        .filter(|&(t, _)| now.saturating_sub(t) <= self.config.stale_after)
                    {
                        // No path is more lopsided than half its round trip;
                        // beyond that one side stepped between the two views.
                        let limit = e.min_delay.max(0.0) / 2.0;
                        let newest = (measured + reported) / 2.0;
                        if newest.abs() <= limit {
                            pair_bias = Some(newest);
                            if peer.bias_samples.len() == BIAS_SAMPLES {
                                peer.bias_samples.pop_front();
                            }
                            peer.bias_samples.push_back(newest);
                            let mut sorted: Vec<f64> = peer.bias_samples.iter().copied().collect();
                            sorted.sort_by(f64::total_cmp);
                            peer.bias = sorted.get(sorted.len() / 2).copied();
                        }
                    }
                    let bias = pair_bias.or(peer.bias);
                    peer.info.path_bias_micros = bias;
                    let offset = measured - bias.unwrap_or(0.0);
                    peer.info.offset_micros = Some(offset);
                    peer.info.delay_micros = Some(e.min_delay);
                    peer.info.uncertainty_micros = Some(e.uncertainty_at(at));
                    peer.info.rate_ppm = Some((e.rate + rate_shift - my_rate) * 1e6);
                    peer.interval = adapt_probing(
                        &self.config,
                        peer.interval,
                        synced,
                        e.samples,
                        e.uncertainty_at(at),
                    );
                    // The rate's shared error, as the path bias for the
                    // offset: our measurement of its rate against ours plus
                    // its measurement of ours against its own is twice the
                    // error both windows share (see `handle_peer_view`).
                    let measured_rate = e.measured_rate + rate_shift;
                    let relative = measured_rate - self.rate_base;
                    peer.measured_rate = (relative.is_finite()
                        && e.measured_rate_uncertainty <= RATE_MEASURED)
                        .then_some(relative);
                    let shared = peer
                        .reported_rate
                        .filter(|&(t, _)| now.saturating_sub(t) <= self.config.stale_after)
                        .map(|(_, reported)| (relative + reported) / 2.0)
                        .filter(|shared| {
                            shared.abs() <= 3.0 * e.measured_rate_uncertainty + RATE_SHARED_SLACK
                        });
                    let measured_rate = measured_rate - shared.unwrap_or(0.0);
                    if fresh && offset.is_finite() {
                        views.push(View {
                            offset,
                            sigma: e.uncertainty_at(at).max(0.5),
                            rate: e.rate + rate_shift,
                            rate_sigma: e.rate_uncertainty.max(1e-9),
                            measured_rate,
                            measured_rate_sigma: e.measured_rate_uncertainty.max(1e-9),
                            bound: e.half_gap.max(0.0),
                            unsynced: peer.reported_unsynced,
                            young: is_young(my_age, peer.reported_synced_for, now),
                        });
                    }
                }
                None => {
                    peer.info.offset_micros = None;
                    peer.info.delay_micros = None;
                    peer.info.uncertainty_micros = None;
                    peer.info.rate_ppm = None;
                }
            }
        }
        match self.state {
            State::Unsynced { first_ready } => self.acquire(now, first_ready, &views, heard_any),
            State::Synced => {
                // A peer still acquiring has no timeline to follow: a synced
                // node does not step to it (so a joiner cannot pull the
                // swarm forward, however near its start).
                self.couple(now, &views);
            }
        }
    }

    fn acquire(&mut self, now: i64, first_ready: Option<i64>, views: &[View], heard_any: bool) {
        if views.is_empty() {
            if !heard_any && now.saturating_sub(self.created) >= self.config.solo_after {
                self.state = State::Synced;
                self.synced_at = Some(now);
                self.events.push_back(Event::Synced);
            }
            return;
        }
        let first_ready = first_ready.unwrap_or(now);
        self.state = State::Unsynced {
            first_ready: Some(first_ready),
        };
        let members = largest_cluster(views, self.config.outlier, true);
        let probed = self.probed.len();
        let sigma = consensus_sigma(views, &members);
        let everyone_seen = views.len() >= probed;
        let waited = now.saturating_sub(first_ready) >= self.config.acquire_after;
        if !(waited || (everyone_seen && sigma <= self.config.acquire_uncertainty)) {
            return;
        }
        if !members.is_empty() {
            let c = weighted_means(views, &members);
            self.step(now, c.offset);
            // The swarm's rate as far as the windows can tell; until they
            // can, this node's own clock is the best guess.
            if c.measured_var <= RATE_MEASURED * RATE_MEASURED {
                self.rate_var = c
                    .measured_var
                    .max((c.rate - c.measured_rate).powi(2))
                    .clamp(1e-12, self.config.estimator.rate_prior_sigma.powi(2));
                self.rate_base = c.rate.clamp(-self.config.max_skew, self.config.max_skew);
            }
            self.rate_slew = 0.0;
        }
        self.state = State::Synced;
        self.synced_at = Some(now);
        self.events.push_back(Event::Synced);
    }

    fn couple(&mut self, now: i64, views: &[View]) {
        let outlier = self.config.outlier;
        // Only a timeline *proven* ahead is one to step to: beyond the
        // estimate's noise and beyond what its round trips can prove (heavy
        // jitter makes an estimate wander by milliseconds while its sigma
        // looks small; a step on such a wobble is heard, and makes every
        // other node step after it). A peer closer than that is averaged
        // with and slewed to instead.
        let proven = |v: &View| v.offset.abs() - 3.0 * v.sigma - v.bound > outlier;
        let ahead: Vec<View> = views
            .iter()
            .copied()
            .filter(|v| !v.unsynced && v.offset > 0.0 && proven(v))
            .collect();
        let behind: Vec<View> = views
            .iter()
            .copied()
            .filter(|v| !v.unsynced && v.offset < 0.0 && proven(v))
            .collect();
        // The group this node agrees with, itself included.
        let agreeing = 1 + views
            .iter()
            .filter(|v| v.offset.abs() <= outlier + v.bound)
            .count();
        // A timeline ahead is followed only when it is held by at least as
        // many peers as agree with us (a healed partition: the later side
        // wins a tie), never one peer against the rest (a peer whose clock
        // jumped by hours); a timeline behind only when strictly more hold
        // it (this node is the one that jumped, or the smaller side of a
        // partition ahead of a larger one): the one case a synced node's
        // swarm time runs backward.
        let ahead_members = largest_cluster(&ahead, outlier, false);
        let behind_members = largest_cluster(&behind, outlier, false);
        let target = if !ahead.is_empty() && ahead_members.len() >= agreeing {
            Some(weighted_means(&ahead, &ahead_members))
        } else if !behind.is_empty() && behind_members.len() > agreeing {
            Some(weighted_means(&behind, &behind_members))
        } else {
            None
        };
        match target {
            None => self.far_ahead_since = None,
            Some(c) => {
                let since = *self.far_ahead_since.get_or_insert(now);
                if now.saturating_sub(since) >= self.config.adopt_after {
                    self.step(now, c.offset);
                    self.rate_var = c
                        .measured_var
                        .clamp(1e-12, self.config.estimator.rate_prior_sigma.powi(2));
                    self.rate_base = c.rate.clamp(-self.config.max_skew, self.config.max_skew);
                    self.rate_slew = 0.0;
                    self.far_ahead_since = None;
                    return;
                }
            }
        }
        // A joiner still settling is not averaged with: it follows us.
        let near: Vec<usize> = (0..views.len())
            .filter(|&i| {
                let v = &views[i];
                !v.young && !v.unsynced && v.offset.abs() <= outlier + v.bound
            })
            .collect();
        self.mark_coupled(outlier);
        if near.is_empty() {
            // Nobody to follow: free-run at the learned rate, no slew.
            self.reanchor(now);
            self.rate_slew = 0.0;
            self.sync_error = None;
            return;
        }
        let c = weighted_means(views, &near);
        let offset = c.offset;
        let sigma = consensus_sigma(views, &near);
        self.reanchor(now);
        let max_skew = self.config.max_skew;
        // Windows too short to see a rate (seconds of heavy jitter) say
        // nothing of it, and the gain's floor must not feed their noise in.
        if c.measured_var <= RATE_MEASURED * RATE_MEASURED {
            let gain =
                (self.rate_var / (self.rate_var + c.measured_var)).max(self.config.rate_gain);
            // Successive measurements come from overlapping windows, so they
            // are not independent: never trust the filter more than a
            // fraction of the latest measurement, or it stops listening while
            // still wrong.
            self.rate_var = ((1.0 - gain) * self.rate_var + RATE_WANDER * RATE_WANDER)
                .max(RATE_TRUST * c.measured_var);
            self.rate_base += gain * (c.measured_rate - self.rate_base);
        }
        self.rate_base = self.rate_base.clamp(-max_skew, max_skew);
        let tick = self.config.tick_interval as f64;
        let since = now.saturating_sub(self.stepped_at).max(0) as f64;
        let settle = self.config.settle_time.max(1) as f64;
        let fast = self.config.phase_gain_acquire.max(self.config.phase_gain);
        // Fast right after a step, and whenever the error clearly stands out
        // of the estimates' noise (a swarm still converging); slow otherwise.
        let fresh = (-since / settle).exp();
        let significance = offset * offset / (offset * offset + 64.0 * sigma * sigma);
        let phase_gain =
            self.config.phase_gain + (fast - self.config.phase_gain) * fresh.max(significance);
        // Integral action (a critically damped PI loop on the phase): a
        // residual rate error the slope estimates have not resolved yet shows
        // up as a persistent phase error, and this removes it.
        self.rate_base += phase_gain * phase_gain / 8.0 * offset / tick;
        self.rate_base -= self.anchor_bend(now);
        self.rate_base = self.rate_base.clamp(-max_skew, max_skew);
        self.rate_slew =
            (phase_gain * offset / tick).clamp(-self.config.max_slew, self.config.max_slew);
        self.sync_error = Some((offset * offset + sigma * sigma).sqrt());
    }

    /// This tick's move of the swarm's rate toward the members' median
    /// clock (see [`SwarmClock::handle_peer_view`]): a fraction of the median
    /// of the drift compensations of this node and its synced peers, bounded
    /// by [`ANCHOR_BEND`] per second, or by [`ANCHOR_BEND_BOOT`] while the
    /// swarm boots. Zero alone.
    fn anchor_bend(&mut self, now: i64) -> f64 {
        let stale_after = self.config.stale_after;
        let mut skews = vec![self.rate_base];
        // How long the oldest member has been synced; a peer that does not
        // say counts as long synced.
        let mut oldest = self.synced_at.map_or(0, |at| now.saturating_sub(at));
        let mut newcomers = Vec::new();
        for (key, p) in self.peers.iter().filter(|(_, p)| !p.reported_unsynced) {
            let Some((at, skew)) = p.reported_skew else {
                continue;
            };
            if now.saturating_sub(at) > stale_after {
                continue;
            }
            skews.push(skew);
            let age = p.reported_synced_for.map_or(i64::MAX, |(at, age)| {
                age.saturating_add(now.saturating_sub(at))
            });
            oldest = oldest.max(age);
            if !self.anchor_seen.contains(key) {
                newcomers.push(key.clone());
            }
        }
        self.oldest_synced_at = Some(now.saturating_sub(oldest));
        if !newcomers.is_empty() {
            // A member arriving once the swarm has run a while is a joiner
            // (or this node is one), which must only bend the timeline
            // gently.
            if oldest >= ANCHOR_BOOT_MEMBERS {
                self.booted = true;
            }
            self.anchor_seen.extend(newcomers);
        }
        if oldest >= ANCHOR_BOOT {
            self.booted = true;
        }
        if skews.len() < 2 {
            return 0.0;
        }
        skews.sort_by(f64::total_cmp);
        let n = skews.len();
        let median = if n % 2 == 1 {
            skews[n / 2]
        } else {
            (skews[n / 2 - 1] + skews[n / 2]) / 2.0
        };
        let bend = if self.booted {
            ANCHOR_BEND
        } else {
            ANCHOR_BEND_BOOT
        };
        let bound = bend * self.config.tick_interval as f64 / 1e6;
        let gain = if self.booted {
            ANCHOR_GAIN
        } else {
            ANCHOR_GAIN_BOOT
        };
        (gain * median).clamp(-bound, bound)
    }

    fn mark_coupled(&mut self, outlier: f64) {
        let stale_after = self.config.stale_after;
        let now = self.last_now;
        let my_age = self.synced_at.map(|at| now.saturating_sub(at));
        for p in self.peers.values_mut() {
            let fresh = p
                .estimator
                .newest()
                .is_some_and(|t| now.saturating_sub(t.0) <= stale_after);
            p.info.coupled = fresh
                && !is_young(my_age, p.reported_synced_for, now)
                && p.info.offset_micros.is_some_and(|o| o.abs() <= outlier);
        }
    }
}

/// Whether a peer that has been synced `reported` (its age when it said
/// so, and our local time then) is young against this node, synced for
/// `my_age` at `now` (see [`YOUNG_FOR`]). A peer that does not say counts
/// as long synced.
fn is_young(my_age: Option<i64>, reported: Option<(i64, i64)>, now: i64) -> bool {
    let (Some(mine), Some((at, age))) = (my_age, reported) else {
        return false;
    };
    let theirs = age.saturating_add(now.saturating_sub(at));
    theirs < YOUNG_FOR && mine.saturating_sub(theirs) >= YOUNG_MARGIN
}

/// The next probe interval of a peer whose estimate has `samples` samples
/// and `uncertainty` µs: a synced node whose estimate is better than
/// [`Config::probe_target`] probes a quarter less often per tick, up to
/// [`Config::max_probe_interval`] (as NTP and chrony lengthen their poll
/// once locked); one whose estimate is twice as bad, or that is not synced,
/// probes at [`Config::probe_interval`] again. On a clean link the windows
/// stay good with few samples; on a jittery one they need many, and get them.
fn adapt_probing(
    config: &Config,
    interval: i64,
    synced: bool,
    samples: usize,
    uncertainty: f64,
) -> i64 {
    let base = config.probe_interval;
    if !synced || uncertainty > 2.0 * config.probe_target {
        base
    } else if samples >= 32 && uncertainty <= config.probe_target {
        interval
            .saturating_add(interval / 4)
            .clamp(base, config.max_probe_interval.max(base))
    } else {
        interval
    }
}

/// Indices of the largest group of views whose offsets fit in one window of
/// width `width`; ties go to the group furthest ahead. With `with_self`, this
/// node (offset 0) counts as a member, and a group made of it alone is
/// returned as empty (nothing to adopt).
fn largest_cluster(views: &[View], width: f64, with_self: bool) -> Vec<usize> {
    let mut offsets: Vec<(f64, Option<usize>)> = views
        .iter()
        .enumerate()
        .map(|(i, v)| (v.offset, Some(i)))
        .collect();
    if with_self {
        offsets.push((0.0, None));
    }
    offsets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = (0usize, f64::NEG_INFINITY, 0usize);
    for start in 0..offsets.len() {
        let end = offsets[start..]
            .iter()
            .take_while(|o| o.0 <= offsets[start].0 + width)
            .count();
        let key = offsets[start].0;
        if end > best.0 || (end == best.0 && key > best.1) {
            best = (end, key, start);
        }
    }
    let (count, _, start) = best;
    offsets[start..start + count]
        .iter()
        .filter_map(|o| o.1)
        .collect()
}

/// How much the consensus rate may wander per tick (one sigma), so the rate
/// filter never stops listening.
const RATE_WANDER: f64 = 0.02e-6;

/// The rate filter's variance never drops below this fraction of the latest
/// measurement's (see `couple`), so its gain never drops below
/// `RATE_TRUST / (1 + RATE_TRUST)` per tick (about 5 %: a time constant of
/// about 5 s). It was 0.25 (a gain of at least 20 % per tick): the swarm's
/// common rate then followed every wiggle of the 40 s windows' slopes (an
/// envelope point entering or leaving moves a slope by ppm), each node's
/// peers followed it, and under 20 ± 10 ms of jitter the common rate
/// wandered 7–38 ppm per 150 s run in the simulator (issue 13).
const RATE_TRUST: f64 = 0.05;

/// A shared rate error (see `tick`) may exceed three sigmas of the window's
/// rate by this much: the two windows differ in age and in samples.
const RATE_SHARED_SLACK: f64 = 1e-6;

/// A consensus rate measured worse than this (one sigma) is not fed to the
/// rate filter, nor adopted at acquisition.
const RATE_MEASURED: f64 = 30e-6;

/// Inverse-variance weighted means over `members`.
#[derive(Debug, Clone, Copy)]
struct Consensus {
    /// Offset of the peers' timeline from ours, µs.
    offset: f64,
    /// Their rate against our local clock (prior-blended: a usable guess
    /// even from short windows).
    rate: f64,
    /// Their rate as the windows alone measure it, and its variance (the
    /// input of the rate filter; huge while windows are short).
    measured_rate: f64,
    measured_var: f64,
}

fn weighted_means(views: &[View], members: &[usize]) -> Consensus {
    let (mut wo, mut so, mut wr, mut sr, mut wm, mut sm) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for &i in members {
        let v = views[i];
        let w = 1.0 / (v.sigma * v.sigma);
        wo += w;
        so += w * v.offset;
        let w = 1.0 / (v.rate_sigma * v.rate_sigma);
        wr += w;
        sr += w * v.rate;
        let w = 1.0 / (v.measured_rate_sigma * v.measured_rate_sigma);
        if w.is_finite() {
            wm += w;
            sm += w * v.measured_rate;
        }
    }
    let finite_or = |x: f64, d: f64| if x.is_finite() { x } else { d };
    Consensus {
        offset: finite_or(if wo > 0.0 { so / wo } else { 0.0 }, 0.0),
        rate: finite_or(if wr > 0.0 { sr / wr } else { 0.0 }, 0.0),
        measured_rate: finite_or(if wm > 0.0 { sm / wm } else { 0.0 }, 0.0),
        measured_var: if wm > 0.0 {
            finite_or(1.0 / wm, 1.0)
        } else {
            1.0
        },
    }
}

fn consensus_sigma(views: &[View], members: &[usize]) -> f64 {
    let w: f64 = members
        .iter()
        .map(|&i| 1.0 / (views[i].sigma * views[i].sigma))
        .sum();
    if w > 0.0 {
        (1.0 / w).sqrt()
    } else {
        f64::INFINITY
    }
}
