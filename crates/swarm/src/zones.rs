//! Zones on the wire: which zone a node plays in, and how it plays there.
//!
//! A zone is a group of nodes with its own session and coordinator. Each
//! node carries its own [`Placement`] in every heartbeat ([`crate::NodeStatus`]):
//! its zone, the zone's [`ZoneSettings`] as it knows them, its
//! [`ChannelMap`] and its delay trim, with a counter that only the node
//! itself moves (it is the placement's single writer, so newer always
//! wins). Sessions carry their zone ([`crate::Session::zone`]).
//!
//! What it is not: the rules (who may move whom, how settings converge, how
//! roles are derived per zone) are the node's; this module holds the wire
//! types and their checks.

use crate::wire::{MAX_COUNTER, MAX_VOLUME_PERMILLE};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The zone every node is in until it is moved.
pub const DEFAULT_ZONE: &str = "default";
/// The default zone's name.
pub const DEFAULT_ZONE_NAME: &str = "Everywhere";
/// Longest zone id, in bytes.
pub const MAX_ZONE_ID_LEN: usize = 32;
/// Longest zone name, in bytes.
pub const MAX_ZONE_NAME_LEN: usize = 64;
/// Largest delay trim a node may carry, ms (the latency trim's bound).
pub const MAX_DELAY_MS: i64 = 10_000;

/// A zone's identity: 1 to [`MAX_ZONE_ID_LEN`] lowercase ASCII letters,
/// digits and dashes. The name people see is in [`ZoneSettings`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZoneId(String);

impl ZoneId {
    /// The default zone.
    pub fn default_zone() -> Self {
        Self(DEFAULT_ZONE.to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ZoneId {
    fn default() -> Self {
        Self::default_zone()
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ZoneId {
    type Error = String;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        if id.is_empty() || id.len() > MAX_ZONE_ID_LEN {
            return Err(format!(
                "a zone id is 1 to {MAX_ZONE_ID_LEN} characters, not {}",
                id.len()
            ));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("a zone id holds only a-z, 0-9 and '-'".into());
        }
        Ok(Self(id))
    }
}

impl std::str::FromStr for ZoneId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_string())
    }
}

impl From<ZoneId> for String {
    fn from(id: ZoneId) -> Self {
        id.0
    }
}

/// Which channels of the music a node plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelMap {
    /// Both channels, as recorded.
    #[default]
    Stereo,
    /// The left channel, on every output channel.
    Left,
    /// The right channel, on every output channel.
    Right,
    /// Both channels mixed down, on every output channel.
    Mono,
}

impl ChannelMap {
    /// Its name: `stereo`, `left`, `right` or `mono`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stereo => "stereo",
            Self::Left => "left",
            Self::Right => "right",
            Self::Mono => "mono",
        }
    }
}

impl std::str::FromStr for ChannelMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stereo" => Ok(Self::Stereo),
            "left" => Ok(Self::Left),
            "right" => Ok(Self::Right),
            "mono" => Ok(Self::Mono),
            other => Err(format!(
                "channel map must be stereo, left, right or mono, not {other:?}"
            )),
        }
    }
}

/// A zone's shared settings: its name and group volume. Every member
/// carries them; they converge by `version` (a change goes one above the
/// highest a member knows), ties broken by the settings themselves, so two
/// renames made at once on both sides of a partition settle on one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ZoneSettings {
    /// The name people see (display text, at most [`MAX_ZONE_NAME_LEN`] bytes).
    pub name: String,
    /// The zone's volume in thousandths (1000 unchanged), applied on top of
    /// each node's own volume.
    pub volume_permille: u16,
    /// Orders settings (at most [`MAX_COUNTER`]).
    pub version: u64,
}

impl Default for ZoneSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_ZONE_NAME.to_string(),
            volume_permille: 1000,
            version: 0,
        }
    }
}

impl ZoneSettings {
    /// Whether `self` wins over `other` when members disagree.
    pub fn supersedes(&self, other: &ZoneSettings) -> bool {
        (self.version, self.volume_permille, &self.name)
            > (other.version, other.volume_permille, &other.name)
    }

    /// Checks the bounds a well-formed value from a peer may still break.
    pub fn check(&self) -> Result<(), String> {
        check_zone_name(&self.name)?;
        if self.volume_permille > MAX_VOLUME_PERMILLE {
            return Err(format!(
                "zone volume {} is above {MAX_VOLUME_PERMILLE} thousandths",
                self.volume_permille
            ));
        }
        if self.version > MAX_COUNTER {
            return Err(format!(
                "zone settings version {} is above {MAX_COUNTER}",
                self.version
            ));
        }
        Ok(())
    }
}

/// Checks a zone name: not empty, at most [`MAX_ZONE_NAME_LEN`] bytes, no
/// control or bidirectional characters (it is what
/// [`firefly_library::display_text`] leaves, trimmed).
pub fn check_zone_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ZONE_NAME_LEN {
        return Err(format!(
            "a zone name is 1 to {MAX_ZONE_NAME_LEN} bytes, not {}",
            name.len()
        ));
    }
    if firefly_library::display_text(name) != name || name.trim() != name {
        return Err("a zone name may not hold control characters or edge spaces".into());
    }
    Ok(())
}

/// Where a node plays and how: carried in its heartbeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The zone it plays in.
    pub zone: ZoneId,
    /// Its zone's settings as it knows them.
    pub settings: ZoneSettings,
    /// Which channels it plays.
    pub channel: ChannelMap,
    /// Its delay trim, ms: added to the delay its output reports (the
    /// `--latency-ms` trim), at most [`MAX_DELAY_MS`] either way.
    pub delay_ms: i64,
    /// Changes of this placement, made only by the node itself (at most
    /// [`MAX_COUNTER`]): a higher counter is newer.
    pub counter: u64,
}

impl Placement {
    /// Checks the bounds a well-formed placement from a peer may still break.
    pub fn check(&self) -> Result<(), String> {
        self.settings.check()?;
        if self.delay_ms.abs() > MAX_DELAY_MS {
            return Err(format!(
                "delay {} ms is beyond ±{MAX_DELAY_MS} ms",
                self.delay_ms
            ));
        }
        if self.counter > MAX_COUNTER {
            return Err(format!(
                "placement counter {} is above {MAX_COUNTER}",
                self.counter
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids_are_short_and_plain() {
        assert_eq!("kitchen-2".parse::<ZoneId>().unwrap().as_str(), "kitchen-2");
        for bad in ["", "Kitchen", "a b", "a\u{1b}", &"x".repeat(33), "ü"] {
            assert!(bad.parse::<ZoneId>().is_err(), "{bad:?}");
        }
        // A peer's id is checked as it decodes.
        let bytes = crate::wire::encode(&"NOT OK".to_string()).unwrap();
        assert!(crate::wire::decode::<ZoneId>(&bytes, 1024).is_err());
    }

    #[test]
    fn placements_round_trip_and_bad_ones_are_refused() {
        let placement = Placement {
            zone: "kitchen".parse().unwrap(),
            settings: ZoneSettings {
                name: "Kitchen".into(),
                volume_permille: 800,
                version: 3,
            },
            channel: ChannelMap::Left,
            delay_ms: -12,
            counter: 7,
        };
        let bytes = crate::wire::encode(&placement).unwrap();
        let back: Placement = crate::wire::decode(&bytes, 1024).unwrap();
        assert_eq!(back, placement);
        assert!(back.check().is_ok());
        for bad in [
            Placement {
                delay_ms: 10_001,
                ..placement.clone()
            },
            Placement {
                counter: MAX_COUNTER + 1,
                ..placement.clone()
            },
            Placement {
                settings: ZoneSettings {
                    name: "a\nb".into(),
                    ..placement.settings.clone()
                },
                ..placement.clone()
            },
            Placement {
                settings: ZoneSettings {
                    name: "x".repeat(65),
                    ..placement.settings.clone()
                },
                ..placement.clone()
            },
            Placement {
                settings: ZoneSettings {
                    volume_permille: 4001,
                    ..placement.settings.clone()
                },
                ..placement.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_converge_on_one_whatever_the_order() {
        let a = ZoneSettings {
            name: "A".into(),
            volume_permille: 1000,
            version: 2,
        };
        let b = ZoneSettings {
            name: "B".into(),
            ..a.clone()
        };
        assert!(b.supersedes(&a) && !a.supersedes(&b));
        let newer = ZoneSettings {
            version: 3,
            ..a.clone()
        };
        assert!(newer.supersedes(&b));
        assert!(!a.supersedes(&a));
    }
}
